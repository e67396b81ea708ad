//! The process-wide ONNX Runtime: finding `libonnxruntime`, creating the one
//! environment ONNX Runtime allows per process, and opening model sessions
//! on the device a model asks for.
//!
//! The library is loaded at run time (`ort`'s `load-dynamic`) so Sluice
//! builds and starts without it; a model is only refused when it is used
//! and the library cannot be found, with the places that were searched.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use datafusion::error::{DataFusionError, Result};
use ort::environment::Environment;
use ort::ep;
use ort::logging::LogLevel;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use sluice_types::error::{SluiceError, SqlState};

/// Environment variable naming the ONNX Runtime library file explicitly.
pub const LIBRARY_ENV: &str = "SLUICE_ONNXRUNTIME";
/// Environment variable naming Sluice's home (libraries and bundled models).
pub const HOME_ENV: &str = "SLUICE_HOME";

/// Where the execution of a model is asked to happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceChoice {
    /// CUDA when it is usable, otherwise CPU (the reason is logged).
    Auto,
    /// CPU only.
    Cpu,
    /// CUDA, or an error.
    Cuda,
}

impl DeviceChoice {
    /// Parses the `'device'` model option.
    pub fn parse(value: &str) -> Result<Self> {
        match value.to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "cuda" | "gpu" => Ok(Self::Cuda),
            other => Err(DataFusionError::Plan(format!(
                "unknown device '{other}': expected 'auto', 'cpu' or 'cuda'"
            ))),
        }
    }

    /// The option value as written back in `DESCRIBE MODEL`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Cpu => "cpu",
            Self::Cuda => "cuda",
        }
    }
}

/// Sluice's home directory: `$SLUICE_HOME`, else `~/.local/share/sluice`,
/// where `scripts/install-models.sh` puts the ONNX Runtime library and the
/// bundled models.
pub fn sluice_home() -> PathBuf {
    if let Some(home) = std::env::var_os(HOME_ENV) {
        return PathBuf::from(home);
    }
    let user_home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    user_home.join(".local").join("share").join("sluice")
}

/// The places searched for the library, in order.
fn library_candidates() -> Vec<PathBuf> {
    let mut candidates = Vec::new();
    for var in [LIBRARY_ENV, "ORT_DYLIB_PATH"] {
        if let Some(path) = std::env::var_os(var) {
            candidates.push(PathBuf::from(path));
        }
    }
    candidates.push(sluice_home().join("lib").join(library_file_name()));
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
    {
        candidates.push(dir.join("lib").join(library_file_name()));
        candidates.push(dir.join(library_file_name()));
    }
    candidates
}

fn library_file_name() -> &'static str {
    if cfg!(target_os = "macos") {
        "libonnxruntime.dylib"
    } else if cfg!(windows) {
        "onnxruntime.dll"
    } else {
        "libonnxruntime.so"
    }
}

/// The loaded environment, or why there is none. Loading happens once: ONNX
/// Runtime allows one environment per process.
fn environment() -> Result<&'static Environment> {
    static ENVIRONMENT: OnceLock<std::result::Result<Environment, String>> = OnceLock::new();
    ENVIRONMENT
        .get_or_init(load_environment)
        .as_ref()
        .map_err(|reason| SluiceError::new(SqlState::UNDEFINED_FILE, reason.clone()).into())
}

fn load_environment() -> std::result::Result<Environment, String> {
    let candidates = library_candidates();
    let Some(library) = candidates.iter().find(|path| path.is_file()) else {
        let searched: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
        return Err(format!(
            "ONNX Runtime library not found (searched: {}); run scripts/install-deps.sh, \
             or set {LIBRARY_ENV} to the path of {}",
            searched.join(", "),
            library_file_name()
        ));
    };
    let builder = ort::init_from(library)
        .map_err(|e| format!("cannot load ONNX Runtime from {}: {e}", library.display()))?;
    let environment = builder
        .with_name("sluice")
        // ONNX Runtime prints to stderr by default; its messages belong in
        // Sluice's log. Run failures reach the client as SQL errors anyway,
        // so they are logged at debug level, not as errors.
        .with_logger(Arc::new(
            |level: LogLevel, category: &str, _id: &str, location: &str, message: &str| {
                let level = match level {
                    LogLevel::Verbose => log::Level::Trace,
                    LogLevel::Info => log::Level::Debug,
                    LogLevel::Warning => log::Level::Info,
                    LogLevel::Error | LogLevel::Fatal => log::Level::Debug,
                };
                log::log!(target: "onnxruntime", level, "{category} {location}: {message}");
            },
        ))
        .build()
        .map_err(|e| format!("cannot start ONNX Runtime: {e}"))?;
    log::info!("ONNX Runtime loaded from {}", library.display());
    Ok(environment)
}

/// The device a session actually runs on, for `DESCRIBE MODEL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    /// ONNX Runtime's CPU execution provider.
    Cpu,
    /// ONNX Runtime's CUDA execution provider.
    Cuda,
    /// A remote endpoint.
    Remote,
}

impl Device {
    /// Lower-case name, as shown to users.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cpu => "cpu",
            Self::Cuda => "cuda",
            Self::Remote => "remote",
        }
    }
}

/// An open session and the device it runs on.
pub struct OpenedSession {
    /// The ONNX Runtime session.
    pub session: Session,
    /// Where it runs.
    pub device: Device,
    /// Why CUDA was not used, when `auto` fell back to CPU.
    pub fallback_reason: Option<String>,
}

/// Opens `path` as an ONNX Runtime session on the chosen device.
pub fn open_session(
    path: &Path,
    device: DeviceChoice,
    intra_threads: usize,
) -> Result<OpenedSession> {
    let environment = environment()?;
    let bytes = std::fs::read(path).map_err(|e| {
        DataFusionError::from(SluiceError::new(
            SqlState::UNDEFINED_FILE,
            format!("cannot read model file {}: {e}", path.display()),
        ))
    })?;
    // ONNX Runtime refusing the file or the options it was given.
    let in_model = |e: String| {
        DataFusionError::from(SluiceError::new(
            SqlState::INVALID_PARAMETER_VALUE,
            format!("model {}: {e}", path.display()),
        ))
    };
    match device {
        DeviceChoice::Cpu => Ok(OpenedSession {
            session: build_session(environment, &bytes, None, intra_threads).map_err(in_model)?,
            device: Device::Cpu,
            fallback_reason: None,
        }),
        DeviceChoice::Cuda => Ok(OpenedSession {
            session: build_session(environment, &bytes, Some(Device::Cuda), intra_threads)
                .map_err(in_model)?,
            device: Device::Cuda,
            fallback_reason: None,
        }),
        DeviceChoice::Auto => {
            match build_session(environment, &bytes, Some(Device::Cuda), intra_threads) {
                Ok(session) => Ok(OpenedSession {
                    session,
                    device: Device::Cuda,
                    fallback_reason: None,
                }),
                Err(reason) => {
                    log::info!(
                        "model {}: CUDA not usable, running on CPU ({reason})",
                        path.display()
                    );
                    Ok(OpenedSession {
                        session: build_session(environment, &bytes, None, intra_threads)
                            .map_err(in_model)?,
                        device: Device::Cpu,
                        fallback_reason: Some(reason),
                    })
                }
            }
        }
    }
}

fn build_session(
    environment: &Environment,
    bytes: &[u8],
    accelerator: Option<Device>,
    intra_threads: usize,
) -> std::result::Result<Session, String> {
    let fail = |what: &str, e: &dyn std::fmt::Display| format!("{what}: {e}");
    let mut builder = Session::builder(environment)
        .map_err(|e| fail("cannot create a session", &e))?
        .with_optimization_level(GraphOptimizationLevel::Level3)
        .map_err(|e| fail("cannot set the optimisation level", &e))?
        .with_intra_threads(intra_threads.max(1))
        .map_err(|e| fail("cannot set the thread count", &e))?;
    if accelerator == Some(Device::Cuda) {
        // Without error_on_failure ONNX Runtime silently falls back to CPU,
        // and DESCRIBE MODEL would claim a device it does not use.
        builder = builder
            .with_execution_providers([ep::CUDA::default().build().error_on_failure()])
            .map_err(|e| fail("CUDA execution provider unavailable", &e))?;
    }
    builder
        .commit_from_memory(bytes)
        .map_err(|e| fail("not a loadable ONNX model", &e))
}
