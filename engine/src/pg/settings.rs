//! Session settings: the Postgres configuration parameters (GUCs) that
//! clients read and write with `SET`, `SHOW` and `RESET`, with the values a
//! Postgres 15 server reports.
//!
//! Drivers depend on these: pgjdbc refuses a connection unless
//! `client_encoding` is UTF8 and `DateStyle` starts with ISO, psql picks its
//! catalog queries from `server_version`, and every driver reads the
//! parameters marked `reported` from `ParameterStatus` messages.

use std::collections::BTreeMap;
use std::time::Duration;

use datafusion::arrow::array::timezone::Tz;
use datafusion::error::{DataFusionError, Result};

/// The Postgres version Sluice speaks as (`server_version`).
pub const SERVER_VERSION: &str = "15.0";
/// `server_version_num` matching [`SERVER_VERSION`].
pub const SERVER_VERSION_NUM: &str = "150000";

/// The settings Sluice adds to Postgres' own.
const SLUICES_OWN: [&str; 5] = [
    "barrier_interval_ms",
    "checkpoint_interval_ms",
    "region_logs",
    "vector.ef_search",
    "streaming_parallelism",
];

/// One setting as `pg_settings` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SettingRow {
    pub name: &'static str,
    /// The value `SHOW` gives.
    pub value: String,
    pub default: &'static str,
    pub description: &'static str,
    pub read_only: bool,
    /// Changed with `SET` in this session.
    pub set_in_session: bool,
    /// One of Sluice's settings rather than Postgres'.
    pub sluices_own: bool,
}

/// A session's settings, kept in its context's configuration so catalog
/// tables (`pg_settings`), shared by every session, read the settings of
/// the session that queries them.
#[derive(Debug, Clone)]
pub struct SessionSettingsHandle(pub std::sync::Arc<std::sync::Mutex<SessionSettings>>);

/// Definition of one setting.
#[derive(Debug)]
struct SettingDef {
    /// Name as Postgres spells it in `ParameterStatus` and `SHOW ALL`.
    name: &'static str,
    default: &'static str,
    /// Sent to the client in `ParameterStatus` at startup and on change.
    reported: bool,
    /// Cannot be changed with `SET`.
    read_only: bool,
    description: &'static str,
}

const fn def(
    name: &'static str,
    default: &'static str,
    reported: bool,
    read_only: bool,
    description: &'static str,
) -> SettingDef {
    SettingDef {
        name,
        default,
        reported,
        read_only,
        description,
    }
}

const SETTINGS: &[SettingDef] = &[
    def(
        "application_name",
        "",
        true,
        false,
        "Application name reported by the client.",
    ),
    def(
        "barrier_interval_ms",
        "1000",
        false,
        false,
        "How often continuous queries close an epoch (ms): how soon views show new rows.",
    ),
    def(
        "checkpoint_interval_ms",
        "10000",
        false,
        false,
        "How often continuous queries take a checkpoint (ms; 0: only at CHECKPOINT).",
    ),
    def(
        "region_logs",
        "on",
        false,
        false,
        "Whether continuous queries log their model calls' outputs durably, so that a failure \
         after them never runs the model again.",
    ),
    def(
        "vector.ef_search",
        "64",
        false,
        false,
        "Candidates an hnsw index search keeps (more: better recall, slower).",
    ),
    def(
        "bytea_output",
        "hex",
        false,
        false,
        "Output format for bytea.",
    ),
    def(
        "client_encoding",
        "UTF8",
        true,
        false,
        "Client character set; only UTF8 is supported.",
    ),
    def(
        "client_min_messages",
        "notice",
        false,
        false,
        "Lowest message level sent to the client.",
    ),
    def(
        "DateStyle",
        "ISO, MDY",
        true,
        false,
        "Display format for date and time values.",
    ),
    def(
        "default_transaction_isolation",
        "read committed",
        false,
        false,
        "Isolation level of new transactions.",
    ),
    def(
        "default_transaction_read_only",
        "off",
        true,
        false,
        "Whether new transactions are read-only.",
    ),
    def(
        "extra_float_digits",
        "1",
        false,
        false,
        "Extra digits displayed for floating-point values.",
    ),
    def(
        "idle_in_transaction_session_timeout",
        "0",
        false,
        false,
        "Close a session idle this long inside a transaction (ms; 0 disables).",
    ),
    def(
        "idle_session_timeout",
        "0",
        false,
        false,
        "Close a session idle this long outside a transaction (ms; 0 disables).",
    ),
    def(
        "in_hot_standby",
        "off",
        true,
        true,
        "Whether the server is a hot standby.",
    ),
    def(
        "integer_datetimes",
        "on",
        true,
        true,
        "Datetimes are stored as integers.",
    ),
    def(
        "IntervalStyle",
        "postgres",
        true,
        false,
        "Display format for interval values.",
    ),
    def(
        "is_superuser",
        "on",
        true,
        true,
        "Whether the current user is a superuser.",
    ),
    def(
        "lock_timeout",
        "0",
        false,
        false,
        "Timeout for acquiring locks.",
    ),
    def(
        "max_identifier_length",
        "63",
        false,
        true,
        "Maximum identifier length.",
    ),
    def(
        "search_path",
        "\"$user\", public",
        false,
        false,
        "Schema search order for unqualified names.",
    ),
    def(
        "server_encoding",
        "UTF8",
        true,
        true,
        "Server character set.",
    ),
    def(
        "server_version",
        SERVER_VERSION,
        true,
        true,
        "Postgres version Sluice is compatible with.",
    ),
    def(
        "server_version_num",
        SERVER_VERSION_NUM,
        false,
        true,
        "Postgres version as a number.",
    ),
    def(
        "standard_conforming_strings",
        "on",
        true,
        false,
        "Backslashes are literal in ordinary strings.",
    ),
    def(
        "statement_timeout",
        "0",
        false,
        false,
        "Abort statements that run longer (ms; 0 disables).",
    ),
    def(
        "streaming_parallelism",
        "0",
        false,
        false,
        "Batches a continuous query created in this session runs through its stateless stages \
         at once (0: one per core).",
    ),
    def(
        "TimeZone",
        "UTC",
        true,
        false,
        "Time zone for displaying and interpreting timestamps.",
    ),
    def(
        "transaction_isolation",
        "read committed",
        false,
        false,
        "Isolation level of the current transaction.",
    ),
    def(
        "transaction_read_only",
        "off",
        false,
        false,
        "Whether the current transaction is read-only.",
    ),
];

fn find(name: &str) -> Option<&'static SettingDef> {
    SETTINGS.iter().find(|d| d.name.eq_ignore_ascii_case(name))
}

/// Normalises the spellings clients use for a setting name
/// (`SHOW TIME ZONE`, `SHOW TRANSACTION ISOLATION LEVEL`).
pub fn canonical_name(name: &str) -> String {
    let lower = name.trim().to_ascii_lowercase();
    match lower.as_str() {
        "time zone" | "time_zone" => "timezone".into(),
        "transaction isolation level" => "transaction_isolation".into(),
        "session authorization" => "session_authorization".into(),
        // `SHOW vector.ef_search` arrives as two words.
        "vector ef_search" => "vector.ef_search".into(),
        _ => lower,
    }
}

/// The settings of one session.
#[derive(Debug, Clone)]
pub struct SessionSettings {
    /// Values that differ from the defaults, keyed by lowercase name.
    values: BTreeMap<String, String>,
}

impl Default for SessionSettings {
    fn default() -> Self {
        Self::new()
    }
}

impl SessionSettings {
    /// Settings at their Postgres defaults.
    pub fn new() -> Self {
        Self {
            values: BTreeMap::new(),
        }
    }

    /// Current value of `name`, or an error if Postgres would not know it.
    pub fn get(&self, name: &str) -> Result<String> {
        let def = find(name).ok_or_else(|| unrecognized(name))?;
        Ok(self
            .values
            .get(&def.name.to_ascii_lowercase())
            .cloned()
            .unwrap_or_else(|| def.default.to_string()))
    }

    /// Sets `name` to `value` (`None` means `DEFAULT`). Returns the
    /// canonical name and the new value when the client must be told with a
    /// `ParameterStatus` message.
    pub fn set(&mut self, name: &str, value: Option<&str>) -> Result<Option<(String, String)>> {
        let def = find(name).ok_or_else(|| unrecognized(name))?;
        if def.read_only {
            return Err(DataFusionError::Configuration(format!(
                "parameter \"{}\" cannot be changed",
                def.name
            )));
        }
        let key = def.name.to_ascii_lowercase();
        match value {
            None => {
                self.values.remove(&key);
            }
            Some(v) => {
                let v = validate(def, v)?;
                self.values.insert(key, v);
            }
        }
        let current = self.get(def.name)?;
        Ok(def.reported.then(|| (def.name.to_string(), current)))
    }

    /// Resets every setting to its default; returns the reported ones that
    /// changed so the client can be told.
    pub fn reset_all(&mut self) -> Vec<(String, String)> {
        let changed: Vec<(String, String)> = SETTINGS
            .iter()
            .filter(|d| d.reported && self.values.contains_key(&d.name.to_ascii_lowercase()))
            .map(|d| (d.name.to_string(), d.default.to_string()))
            .collect();
        self.values.clear();
        changed
    }

    /// Every setting as `(name, value, description)`, for `SHOW ALL`.
    pub fn all(&self) -> Vec<(String, String, String)> {
        SETTINGS
            .iter()
            .map(|d| {
                let v = self
                    .values
                    .get(&d.name.to_ascii_lowercase())
                    .cloned()
                    .unwrap_or_else(|| d.default.to_string());
                (d.name.to_string(), v, d.description.to_string())
            })
            .collect()
    }

    /// Every setting as a row of `pg_settings`.
    pub(crate) fn catalog_rows(&self) -> Vec<SettingRow> {
        SETTINGS
            .iter()
            .map(|d| {
                let set = self.values.get(&d.name.to_ascii_lowercase());
                SettingRow {
                    name: d.name,
                    value: set.cloned().unwrap_or_else(|| d.default.to_owned()),
                    default: d.default,
                    description: d.description,
                    read_only: d.read_only,
                    set_in_session: set.is_some(),
                    sluices_own: SLUICES_OWN.contains(&d.name),
                }
            })
            .collect()
    }

    /// The reported settings, sent as `ParameterStatus` at startup.
    pub fn reported(&self) -> Vec<(String, String)> {
        SETTINGS
            .iter()
            .filter(|d| d.reported)
            .map(|d| {
                let v = self
                    .values
                    .get(&d.name.to_ascii_lowercase())
                    .cloned()
                    .unwrap_or_else(|| d.default.to_string());
                (d.name.to_string(), v)
            })
            .collect()
    }

    /// `barrier_interval_ms`: how often a continuous query started in this
    /// session closes an epoch.
    pub fn barrier_interval(&self) -> Duration {
        let ms = self
            .get("barrier_interval_ms")
            .ok()
            .and_then(|v| parse_duration_ms(&v).ok())
            .unwrap_or(1000);
        Duration::from_millis(ms.max(10))
    }

    /// `checkpoint_interval_ms`: how often a continuous query started in
    /// this session takes a checkpoint (`None`: only at `CHECKPOINT`).
    pub fn checkpoint_interval(&self) -> Option<Duration> {
        let ms = self
            .get("checkpoint_interval_ms")
            .ok()
            .and_then(|v| parse_duration_ms(&v).ok())
            .unwrap_or(10_000);
        (ms > 0).then(|| Duration::from_millis(ms))
    }

    /// `region_logs`: whether a continuous query started in this session
    /// is cut into regions at a durable log after its model calls.
    pub fn region_logs(&self) -> bool {
        self.get("region_logs")
            .ok()
            .is_none_or(|v| !matches!(v.as_str(), "off" | "false"))
    }

    /// `streaming_parallelism`: how many batches a continuous query started
    /// in this session runs through its stateless stages at once (0, the
    /// default, means one per core).
    pub fn streaming_parallelism(&self) -> usize {
        let configured = self
            .get("streaming_parallelism")
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(0);
        if configured > 0 {
            configured
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }

    /// `vector.ef_search`: the breadth of hnsw index walks.
    pub fn vector_ef_search(&self) -> usize {
        self.get("vector.ef_search")
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(64)
    }

    /// `statement_timeout`, or `None` when disabled.
    pub fn statement_timeout(&self) -> Option<Duration> {
        self.duration("statement_timeout")
    }

    /// How long the session may wait for its client's next message:
    /// `idle_in_transaction_session_timeout` inside a transaction,
    /// `idle_session_timeout` outside one; `None` when disabled.
    pub fn idle_timeout(&self, in_transaction: bool) -> Option<Duration> {
        self.duration(if in_transaction {
            "idle_in_transaction_session_timeout"
        } else {
            "idle_session_timeout"
        })
    }

    /// A duration setting in milliseconds; `None` when 0 (disabled).
    fn duration(&self, name: &str) -> Option<Duration> {
        self.get(name)
            .ok()
            .and_then(|v| parse_duration_ms(&v).ok())
            .filter(|ms| *ms > 0)
            .map(Duration::from_millis)
    }
}

fn unrecognized(name: &str) -> DataFusionError {
    DataFusionError::Configuration(format!("unrecognized configuration parameter \"{name}\""))
}

fn invalid_value(def: &SettingDef, value: &str, why: &str) -> DataFusionError {
    DataFusionError::Configuration(format!(
        "invalid value for parameter \"{}\": \"{value}\" ({why})",
        def.name
    ))
}

/// The longest `TimeZone` value taken (Postgres' NAMEDATALEN - 1).
const MAX_TIME_ZONE_BYTES: usize = 63;

/// Checks a value and returns it in the form `SHOW` displays.
/// `value` as the zone arrow reads timestamps in: an offset (`+05:30`) or
/// a name of the zone database, matched ignoring case as Postgres matches
/// it (`utc`, `asia/tokyo`) and returned as the database spells it.
fn known_time_zone(value: &str) -> Option<String> {
    let value = value.trim();
    if value.parse::<Tz>().is_ok() {
        return Some(value.to_owned());
    }
    chrono_tz::TZ_VARIANTS
        .iter()
        .find(|zone| zone.name().eq_ignore_ascii_case(value))
        .map(|zone| zone.name().to_owned())
}

fn validate(def: &SettingDef, value: &str) -> Result<String> {
    match def.name {
        // Kept to NAMEDATALEN - 1 bytes, as Postgres shows it: the value is
        // reported back in a ParameterStatus, and libpq drops the
        // connection on one longer than 30,000 bytes (fuzzing sent 1 MB).
        "application_name" => {
            let mut end = value.len().min(63);
            while !value.is_char_boundary(end) {
                end -= 1;
            }
            Ok(value[..end].to_owned())
        }
        // Reported back in a ParameterStatus too: a 65 KB zone made libpq
        // lose sync with the server (fuzzing, seed 11). Postgres' zone names
        // are short; a longer value is no zone.
        "TimeZone" if value.len() > MAX_TIME_ZONE_BYTES => Err(invalid_value(
            def,
            &value.chars().take(MAX_TIME_ZONE_BYTES).collect::<String>(),
            &format!("a time zone is at most {MAX_TIME_ZONE_BYTES} bytes"),
        )),
        // Checked now, as Postgres does: an unknown zone failed each later
        // query that read a timestamptz instead.
        "TimeZone" => {
            known_time_zone(value).ok_or_else(|| invalid_value(def, value, "unknown time zone"))
        }
        "client_encoding" => {
            // asyncpg sends `'utf-8'`, quotes included, at startup.
            let v = value
                .trim()
                .trim_matches('\'')
                .to_ascii_uppercase()
                .replace('-', "");
            if v == "UTF8" || v == "UNICODE" {
                Ok("UTF8".into())
            } else {
                Err(invalid_value(def, value, "only UTF8 is supported"))
            }
        }
        "DateStyle" => {
            // Sluice writes dates in ISO form only; accept what keeps that true.
            let upper = value.to_ascii_uppercase();
            if upper.contains("ISO") || upper == "MDY" || upper == "YMD" {
                Ok("ISO, MDY".into())
            } else {
                Err(invalid_value(def, value, "only ISO output is supported"))
            }
        }
        "barrier_interval_ms" => {
            let ms = parse_duration_ms(value).map_err(|why| invalid_value(def, value, &why))?;
            if !(10..=3_600_000).contains(&ms) {
                return Err(invalid_value(def, value, "must be from 10 ms to 1 hour"));
            }
            Ok(ms.to_string())
        }
        "vector.ef_search" => match value.trim().parse::<usize>() {
            Ok(n) if (1..=1000).contains(&n) => Ok(n.to_string()),
            _ => Err(invalid_value(
                def,
                value,
                "must be an integer from 1 to 1000",
            )),
        },
        "region_logs" => match value.trim().to_ascii_lowercase().as_str() {
            "on" | "true" | "1" | "yes" => Ok("on".into()),
            "off" | "false" | "0" | "no" => Ok("off".into()),
            _ => Err(invalid_value(def, value, "must be on or off")),
        },
        "checkpoint_interval_ms" => {
            let ms = parse_duration_ms(value).map_err(|why| invalid_value(def, value, &why))?;
            if ms != 0 && !(100..=86_400_000).contains(&ms) {
                return Err(invalid_value(
                    def,
                    value,
                    "must be 0 (only at CHECKPOINT) or from 100 ms to 1 day",
                ));
            }
            Ok(ms.to_string())
        }
        "streaming_parallelism" => match value.trim().parse::<usize>() {
            Ok(n) if n <= 256 => Ok(n.to_string()),
            _ => Err(invalid_value(
                def,
                value,
                "must be an integer from 0 (one per core) to 256",
            )),
        },
        "default_transaction_isolation" | "transaction_isolation" => {
            match value.trim().to_ascii_lowercase().as_str() {
                // Each runs under snapshot isolation (see the parser's
                // check of transaction modes); the name is kept as set,
                // as Postgres shows it.
                level @ ("read committed" | "read uncommitted" | "repeatable read") => {
                    Ok(level.into())
                }
                _ => Err(invalid_value(
                    def,
                    value,
                    "Sluice runs transactions under snapshot isolation (repeatable read); \
                     serializable is not supported",
                )),
            }
        }
        "statement_timeout"
        | "lock_timeout"
        | "idle_in_transaction_session_timeout"
        | "idle_session_timeout" => {
            let ms = parse_duration_ms(value).map_err(|why| invalid_value(def, value, &why))?;
            Ok(duration_text(ms))
        }
        "extra_float_digits" => match value.trim().parse::<i32>() {
            Ok(n) if (-15..=3).contains(&n) => Ok(n.to_string()),
            _ => Err(invalid_value(
                def,
                value,
                "must be an integer from -15 to 3",
            )),
        },
        // Reported in a ParameterStatus as well; Sluice writes intervals in
        // Postgres' default style only.
        "IntervalStyle" => match value.trim().to_ascii_lowercase().as_str() {
            "postgres" => Ok("postgres".into()),
            _ => Err(invalid_value(
                def,
                &value.chars().take(64).collect::<String>(),
                "only postgres output is supported",
            )),
        },
        "standard_conforming_strings"
        | "default_transaction_read_only"
        | "transaction_read_only" => match value.to_ascii_lowercase().as_str() {
            "on" | "true" | "1" | "yes" => Ok("on".into()),
            "off" | "false" | "0" | "no" => Ok("off".into()),
            _ => Err(invalid_value(def, value, "must be a boolean")),
        },
        _ => Ok(value.to_string()),
    }
}

/// Parses a Postgres duration setting (`500`, `500ms`, `5s`, `1min`, `1h`)
/// into milliseconds.
/// A duration as Postgres shows a time setting: in the largest unit that
/// holds it whole (`5s`, `90s`, `1min`, `1500ms`), `0` when disabled.
fn duration_text(ms: u64) -> String {
    const UNITS: [(u64, &str); 4] = [
        (86_400_000, "d"),
        (3_600_000, "h"),
        (60_000, "min"),
        (1_000, "s"),
    ];
    if ms == 0 {
        return "0".into();
    }
    UNITS
        .iter()
        .find(|(factor, _)| ms.is_multiple_of(*factor))
        .map(|(factor, unit)| format!("{}{unit}", ms / factor))
        .unwrap_or_else(|| format!("{ms}ms"))
}

fn parse_duration_ms(value: &str) -> std::result::Result<u64, String> {
    let v = value.trim().to_ascii_lowercase();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (number, unit) = v.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| "expected a number with an optional unit".to_string())?;
    let factor = match unit.trim() {
        "" | "ms" => 1,
        "s" => 1_000,
        "min" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        other => return Err(format!("unknown unit \"{other}\"")),
    };
    n.checked_mul(factor)
        .ok_or_else(|| "value is too large".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_postgres_15() {
        let s = SessionSettings::new();
        assert_eq!(s.get("server_version").unwrap(), "15.0");
        assert_eq!(s.get("datestyle").unwrap(), "ISO, MDY");
        assert_eq!(s.get("CLIENT_ENCODING").unwrap(), "UTF8");
    }

    #[test]
    fn set_reports_changed_parameter() {
        let mut s = SessionSettings::new();
        let reported = s.set("application_name", Some("psql")).unwrap();
        assert_eq!(reported, Some(("application_name".into(), "psql".into())));
        assert_eq!(s.set("extra_float_digits", Some("3")).unwrap(), None);
        assert_eq!(s.get("extra_float_digits").unwrap(), "3");
        let long = "é".repeat(100);
        let (_, kept) = s.set("application_name", Some(&long)).unwrap().unwrap();
        assert_eq!(kept, "é".repeat(31), "63 bytes at most, whole characters");
        s.set("application_name", None).unwrap();
        assert_eq!(s.get("application_name").unwrap(), "");
    }

    #[test]
    fn rejects_unknown_read_only_and_bad_values() {
        let mut s = SessionSettings::new();
        assert!(s.set("no_such_thing", Some("1")).is_err());
        assert!(s.set("server_version", Some("16")).is_err());
        assert!(s.set("client_encoding", Some("LATIN1")).is_err());
        // asyncpg's startup value, quotes included.
        s.set("client_encoding", Some("'utf-8'")).unwrap();
        assert_eq!(s.get("client_encoding").unwrap(), "UTF8");
        assert!(s.set("statement_timeout", Some("5 fortnights")).is_err());
    }

    #[test]
    fn statement_timeout_units() {
        let mut s = SessionSettings::new();
        assert_eq!(s.statement_timeout(), None);
        s.set("statement_timeout", Some("2s")).unwrap();
        assert_eq!(s.statement_timeout(), Some(Duration::from_secs(2)));
        s.set("statement_timeout", Some("150")).unwrap();
        assert_eq!(s.statement_timeout(), Some(Duration::from_millis(150)));
        assert_eq!(s.get("statement_timeout").unwrap(), "150ms");
        for (set, shown) in [
            ("5000", "5s"),
            ("90s", "90s"),
            ("60000", "1min"),
            ("0", "0"),
        ] {
            s.set("statement_timeout", Some(set)).unwrap();
            assert_eq!(s.get("statement_timeout").unwrap(), shown, "SET {set}");
        }
        assert_eq!(s.statement_timeout(), None);
    }

    #[test]
    fn idle_timeouts_by_transaction_state() {
        let mut s = SessionSettings::new();
        assert_eq!(s.idle_timeout(false), None);
        s.set("idle_session_timeout", Some("2s")).unwrap();
        s.set("idle_in_transaction_session_timeout", Some("300"))
            .unwrap();
        assert_eq!(s.idle_timeout(false), Some(Duration::from_secs(2)));
        assert_eq!(s.idle_timeout(true), Some(Duration::from_millis(300)));
        assert!(s.set("idle_session_timeout", Some("soon")).is_err());
    }
}
