//! Header-only probing of encoded audio held in memory (WAV, AIFF, FLAC, Ogg Vorbis, MP3).
//!
//! [`probe`] answers "what is this audio?" — container format, sample rate, channel count and
//! length — without decoding any samples when the container states the length in its header.
//! It is the engine behind SQL functions such as `audio_info(blob)`, so every failure on
//! untrusted bytes (empty, random, truncated, absurd headers) must come back as a
//! [`MediaError`] with a message a SQL user can act on, never as a panic.
//!
//! The bytes are borrowed, not copied: symphonia 0.6's `MediaSourceStream<'s>` accepts a
//! non-`'static` source, so a `Cursor<&[u8]>` over the caller's buffer is enough.
//!
//! This module also holds the crate-internal plumbing shared with `audio_ops` (opening a
//! stream, classifying symphonia errors, a panic guard) so both modules report identical
//! messages for the same defect.

use std::io::{Cursor, ErrorKind};
use std::panic::{AssertUnwindSafe, catch_unwind};

use symphonia::core::codecs::audio::AudioCodecParameters;
use symphonia::core::codecs::audio::well_known::{
    CODEC_ID_PCM_ALAW, CODEC_ID_PCM_F32BE, CODEC_ID_PCM_F32LE, CODEC_ID_PCM_F64BE,
    CODEC_ID_PCM_F64LE, CODEC_ID_PCM_MULAW, CODEC_ID_PCM_S8, CODEC_ID_PCM_S16BE,
    CODEC_ID_PCM_S16LE, CODEC_ID_PCM_S24BE, CODEC_ID_PCM_S24LE, CODEC_ID_PCM_S32BE,
    CODEC_ID_PCM_S32LE, CODEC_ID_PCM_U8, CODEC_ID_PCM_U16BE, CODEC_ID_PCM_U16LE,
    CODEC_ID_PCM_U24BE, CODEC_ID_PCM_U24LE, CODEC_ID_PCM_U32BE, CODEC_ID_PCM_U32LE,
};
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::well_known::{
    FORMAT_ID_AIFF, FORMAT_ID_FLAC, FORMAT_ID_MP1, FORMAT_ID_MP2, FORMAT_ID_MP3, FORMAT_ID_OGG,
    FORMAT_ID_WAVE,
};
use symphonia::core::formats::{FormatOptions, FormatReader, TrackType};
use symphonia::core::io::{MediaSourceStream, ReadBytes};
use symphonia::core::meta::MetadataOptions;
use symphonia::core::packet::Packet;
use symphonia::core::units::TimeBase;

/// Highest sample rate (Hz) accepted from a header or as a resampling target.
///
/// 768 kHz is the highest rate shipped by real converters; anything above is far more likely
/// a corrupt header than real audio, and capping it also bounds the FFT sizes the resampler
/// allocates (they scale with the rates when the two rates share no common factor).
pub const MAX_SAMPLE_RATE: u32 = 768_000;

pub use super::error::MediaError;

/// What [`probe`] learned about an audio blob.
#[derive(Debug, Clone, PartialEq)]
pub struct AudioInfo {
    /// Container format: one of `"wav"`, `"flac"`, `"ogg"`, `"mp3"`, `"aiff"`.
    pub format: &'static str,
    /// Sample rate in Hz; always in `1..=MAX_SAMPLE_RATE`.
    pub sample_rate: u32,
    /// Number of channels; always at least 1.
    pub channels: u16,
    /// Length in frames (samples per channel), excluding encoder delay/padding.
    ///
    /// Taken from the header when the container states it (WAV/AIFF data size, FLAC
    /// STREAMINFO, MP3 Xing/VBRI; for Ogg symphonia reads the granule position of the last
    /// page, a seek rather than a decode). For MP3 without a Xing/VBRI header it is symphonia's
    /// estimate from the bitrate (exact for CBR, approximate for VBR). Only when no length is
    /// stated at all (e.g. streamed WAV whose length fields are 0xFFFFFFFF) are packets
    /// demuxed — never decoded — and counted: payload bytes for PCM, packet durations
    /// otherwise. `None` if the stream holds no packets to count.
    pub frames: Option<u64>,
    /// `frames / sample_rate` in seconds; `None` exactly when `frames` is `None`.
    pub duration_seconds: Option<f64>,
}

/// Reads the container header of `bytes` and reports format, rate, channels and length.
///
/// No samples are decoded. For uncompressed WAV/AIFF the stated length is also checked
/// against the bytes actually present, so a truncated download is reported here
/// ("invalid audio: truncated WAV data") rather than only later at decode time. A stream
/// whose codec this build cannot decode is rejected too, so that a successful probe means
/// [`decode`](super::audio_ops::decode) can be attempted.
pub fn probe(bytes: &[u8]) -> Result<AudioInfo, MediaError> {
    guard(|| {
        let mut stream = open(bytes)?;
        let (format, sample_rate, channels) = (stream.format, stream.sample_rate, stream.channels);

        let frames = match stream.frames {
            Some(frames) => {
                check_pcm_truncation(bytes, stream)?;
                Some(frames)
            }
            None => count_frames_by_demuxing(&mut stream)?,
        };

        Ok(AudioInfo {
            format,
            sample_rate,
            channels,
            frames,
            duration_seconds: frames.map(|f| f as f64 / f64::from(sample_rate)),
        })
    })
}

/// An opened, validated audio stream: the demuxer plus the parameters of its audio track.
pub(crate) struct OpenedStream<'a> {
    pub(crate) reader: Box<dyn FormatReader + 'a>,
    /// Short lowercase format name as exposed in [`AudioInfo::format`].
    pub(crate) format: &'static str,
    /// Human-readable format name for error messages ("WAV", "Ogg", ...).
    pub(crate) label: &'static str,
    pub(crate) track_id: u32,
    pub(crate) params: AudioCodecParameters,
    pub(crate) sample_rate: u32,
    pub(crate) channels: u16,
    /// Length stated by the container (or estimated by symphonia for MP3), if any.
    pub(crate) frames: Option<u64>,
    /// The track's time base, needed to turn packet durations into frames.
    pub(crate) time_base: Option<TimeBase>,
}

/// Runs `f`, converting a panic inside a third-party decoder into a `MediaError`.
///
/// Symphonia is fuzzed but still contains `unreachable!`/indexing on some paths; a SQL engine
/// must not take down a query (or the server) because one blob is malformed. This only helps
/// when the engine is built with `panic = "unwind"` (the default); with `panic = "abort"` the
/// input validation in this module is the only line of defence.
pub(crate) fn guard<T>(f: impl FnOnce() -> Result<T, MediaError>) -> Result<T, MediaError> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| {
        Err(MediaError::invalid(
            "invalid audio: the decoder failed on malformed input",
        ))
    })
}

/// Probes the container, selects the default audio track and validates its parameters.
pub(crate) fn open(bytes: &[u8]) -> Result<OpenedStream<'_>, MediaError> {
    if bytes.is_empty() {
        return Err(MediaError::invalid("invalid audio: empty input"));
    }

    // Borrow the caller's bytes: MediaSourceStream<'s> does not require a 'static source.
    let source = Cursor::new(bytes);
    let mss = MediaSourceStream::new(Box::new(source), Default::default());

    let reader = symphonia::default::get_probe()
        .probe(
            &Hint::new(),
            mss,
            FormatOptions::default(),
            MetadataOptions::default(),
        )
        .map_err(|e| open_error(bytes, &e))?;

    let format_id = reader.format_info().format;
    let (format, label) = if format_id == FORMAT_ID_WAVE {
        ("wav", "WAV")
    } else if format_id == FORMAT_ID_AIFF {
        ("aiff", "AIFF")
    } else if format_id == FORMAT_ID_FLAC {
        ("flac", "FLAC")
    } else if format_id == FORMAT_ID_OGG {
        ("ogg", "Ogg")
    } else if format_id == FORMAT_ID_MP3 {
        ("mp3", "MP3")
    } else if format_id == FORMAT_ID_MP1 || format_id == FORMAT_ID_MP2 {
        // The MPEG demuxer recognises layers I/II, but only the layer III decoder is built in.
        return Err(MediaError::unsupported(
            "unsupported audio: MPEG layer I/II audio is not supported (only MP3)",
        ));
    } else {
        return Err(MediaError::invalid("invalid audio: unrecognised format"));
    };

    let track = reader.default_track(TrackType::Audio).ok_or_else(|| {
        MediaError::invalid(format!("invalid audio: {label} stream has no audio track"))
    })?;
    let params = track
        .codec_params
        .as_ref()
        .and_then(|p| p.audio())
        .cloned()
        .ok_or_else(|| {
            MediaError::invalid(format!("invalid audio: {label} stream has no audio track"))
        })?;
    let track_id = track.id;
    let frames = track.num_frames;
    let time_base = track.time_base;

    let sample_rate = match params.sample_rate {
        None => {
            return Err(MediaError::invalid(format!(
                "invalid audio: {label} header does not state a sample rate"
            )));
        }
        Some(0) => {
            return Err(MediaError::invalid(format!(
                "invalid audio: {label} header declares a sample rate of 0 Hz"
            )));
        }
        Some(rate) if rate > MAX_SAMPLE_RATE => {
            return Err(MediaError::invalid(format!(
                "invalid audio: {label} header declares an implausible sample rate of {rate} Hz \
                 (limit {MAX_SAMPLE_RATE} Hz)"
            )));
        }
        Some(rate) => rate,
    };

    let channel_count = params.channels.as_ref().map(|c| c.count());
    let channels = match channel_count {
        None => {
            return Err(MediaError::invalid(format!(
                "invalid audio: {label} header does not state the channel count"
            )));
        }
        Some(0) => {
            return Err(MediaError::invalid(format!(
                "invalid audio: {label} header declares 0 channels"
            )));
        }
        Some(n) => u16::try_from(n).map_err(|_| {
            MediaError::invalid(format!(
                "invalid audio: {label} header declares an implausible {n} channels"
            ))
        })?,
    };

    // Reject here rather than at decode time so that probe() succeeding implies decodability.
    if symphonia::default::get_codecs()
        .get_audio_decoder(params.codec)
        .is_none()
    {
        return Err(MediaError::unsupported(format!(
            "unsupported audio: the {label} stream uses a codec this build cannot decode"
        )));
    }

    Ok(OpenedStream {
        reader,
        format,
        label,
        track_id,
        params,
        sample_rate,
        channels,
        frames,
        time_base,
    })
}

/// Reads the next packet, translating demuxer failures into user-facing messages.
///
/// `Ok(None)` is a clean end of stream. An unexpected EOF is truncation only when the
/// container stated a length: streamed WAV (length fields set to 0xFFFFFFFF) has no other way
/// to end, and symphonia reports that end as an EOF error.
pub(crate) fn read_packet(stream: &mut OpenedStream<'_>) -> Result<Option<Packet>, MediaError> {
    let label = stream.label;
    match stream.reader.next_packet() {
        Ok(packet) => Ok(packet),
        Err(SymphoniaError::IoError(e)) if e.kind() == ErrorKind::UnexpectedEof => {
            if stream.frames.is_none() {
                Ok(None)
            } else {
                Err(MediaError::invalid(format!(
                    "invalid audio: truncated {label} data"
                )))
            }
        }
        Err(SymphoniaError::ResetRequired) => Err(MediaError::unsupported(format!(
            "unsupported audio: the {label} stream changes its parameters mid-stream \
             (e.g. chained Ogg streams)"
        ))),
        Err(SymphoniaError::LimitError(msg)) => Err(MediaError::invalid(format!(
            "invalid audio: {label} data exceeds a safety limit ({msg})"
        ))),
        Err(e) => Err(MediaError::invalid(format!(
            "invalid audio: corrupt {label} data ({e})"
        ))),
    }
}

/// Maps a failure of symphonia's probe to a message, using the magic bytes to tell
/// "not audio at all" apart from "a damaged file of a format we know".
fn open_error(bytes: &[u8], err: &SymphoniaError) -> MediaError {
    let Some(label) = sniff(bytes) else {
        return MediaError::invalid("invalid audio: unrecognised format");
    };
    match err {
        SymphoniaError::IoError(e) if e.kind() == ErrorKind::UnexpectedEof => {
            MediaError::invalid(format!("invalid audio: truncated {label} header"))
        }
        // The probe itself found no reader: the magic bytes lied or the header is mangled.
        // (Matched on symphonia 0.6's message; a wording change only degrades this message.)
        SymphoniaError::Unsupported(what) if what.starts_with("core (probe)") => {
            MediaError::invalid(format!(
                "invalid audio: unrecognised format (looks like a damaged {label} file)"
            ))
        }
        SymphoniaError::Unsupported(what) => MediaError::unsupported(format!(
            "unsupported audio: this {label} variant is not supported ({what})"
        )),
        SymphoniaError::DecodeError(what) => {
            MediaError::invalid(format!("invalid audio: corrupt {label} header ({what})"))
        }
        SymphoniaError::LimitError(what) => MediaError::invalid(format!(
            "invalid audio: {label} header exceeds a safety limit ({what})"
        )),
        other => MediaError::invalid(format!(
            "invalid audio: cannot read {label} header ({other})"
        )),
    }
}

/// Guesses the container from its leading magic bytes; used only to word error messages.
fn sniff(bytes: &[u8]) -> Option<&'static str> {
    let magic = |at: usize, m: &[u8]| bytes.get(at..at + m.len()) == Some(m);
    if magic(0, b"RIFF") && (bytes.len() < 12 || magic(8, b"WAVE")) {
        Some("WAV")
    } else if magic(0, b"FORM") && (bytes.len() < 12 || magic(8, b"AIFF") || magic(8, b"AIFC")) {
        Some("AIFF")
    } else if magic(0, b"fLaC") {
        Some("FLAC")
    } else if magic(0, b"OggS") {
        Some("Ogg")
    } else if magic(0, b"ID3") {
        Some("MP3")
    } else {
        match bytes {
            // An MPEG audio frame sync word: 11 set bits.
            [0xFF, b, ..] if b & 0xE0 == 0xE0 => Some("MP3"),
            _ => None,
        }
    }
}

/// Bytes per sample of the fixed-size PCM codecs, or `None` for compressed codecs.
fn pcm_bytes_per_sample(stream: &OpenedStream<'_>) -> Option<u64> {
    let codec = stream.params.codec;
    let one = [
        CODEC_ID_PCM_U8,
        CODEC_ID_PCM_S8,
        CODEC_ID_PCM_ALAW,
        CODEC_ID_PCM_MULAW,
    ];
    let two = [
        CODEC_ID_PCM_S16LE,
        CODEC_ID_PCM_S16BE,
        CODEC_ID_PCM_U16LE,
        CODEC_ID_PCM_U16BE,
    ];
    let three = [
        CODEC_ID_PCM_S24LE,
        CODEC_ID_PCM_S24BE,
        CODEC_ID_PCM_U24LE,
        CODEC_ID_PCM_U24BE,
    ];
    let four = [
        CODEC_ID_PCM_S32LE,
        CODEC_ID_PCM_S32BE,
        CODEC_ID_PCM_U32LE,
        CODEC_ID_PCM_U32BE,
        CODEC_ID_PCM_F32LE,
        CODEC_ID_PCM_F32BE,
    ];
    let eight = [CODEC_ID_PCM_F64LE, CODEC_ID_PCM_F64BE];
    if one.contains(&codec) {
        Some(1)
    } else if two.contains(&codec) {
        Some(2)
    } else if three.contains(&codec) {
        Some(3)
    } else if four.contains(&codec) {
        Some(4)
    } else if eight.contains(&codec) {
        Some(8)
    } else {
        None
    }
}

/// Whether the container's stated length is exact, so decoding fewer frames than stated can
/// only mean the data was cut short: uncompressed WAV/AIFF (length derived from the data chunk
/// size) and FLAC (STREAMINFO sample count). Ogg and MP3 lengths are derived or estimated.
pub(crate) fn stated_length_is_exact(stream: &OpenedStream<'_>) -> bool {
    match stream.format {
        "wav" | "aiff" => pcm_bytes_per_sample(stream).is_some(),
        "flac" => true,
        _ => false,
    }
}

/// For uncompressed WAV/AIFF, checks that the bytes after the header can hold the stated
/// number of frames.
///
/// Without this, probe would happily report the length written in the header of a truncated
/// download. Takes the stream by value because only the underlying byte stream knows where the
/// sample data starts (`into_inner` consumes the demuxer); probe needs nothing else from it.
fn check_pcm_truncation(bytes: &[u8], stream: OpenedStream<'_>) -> Result<(), MediaError> {
    let (Some(frames), Some(bytes_per_sample)) = (stream.frames, pcm_bytes_per_sample(&stream))
    else {
        return Ok(());
    };
    if stream.format != "wav" && stream.format != "aiff" {
        return Ok(());
    }
    let (label, channels) = (stream.label, stream.channels);
    // Right after the header parse the demuxer is positioned at the first sample byte.
    let data_start = stream.reader.into_inner().pos();
    let available = (bytes.len() as u64).saturating_sub(data_start);
    let frame_bytes = bytes_per_sample.saturating_mul(u64::from(channels));
    let needed = frames.checked_mul(frame_bytes);
    if needed.is_none_or(|needed| needed > available) {
        let held = available.checked_div(frame_bytes).unwrap_or(0);
        return Err(MediaError::invalid(format!(
            "invalid audio: truncated {label} data (header declares {frames} frames, only {held} present)"
        )));
    }
    Ok(())
}

/// Fallback when the container states no length: demux (without decoding) and sum the packet
/// durations of the audio track.
fn count_frames_by_demuxing(stream: &mut OpenedStream<'_>) -> Result<Option<u64>, MediaError> {
    // For uncompressed PCM the payload size is exact; packet durations are not, because the
    // RIFF demuxer stamps a short final packet with the full nominal duration.
    let pcm_frame_bytes = pcm_bytes_per_sample(stream)
        .map(|b| b.saturating_mul(u64::from(stream.channels)))
        .filter(|&b| b > 0);
    let mut total: u64 = 0;
    let mut seen = false;
    while let Some(packet) = read_packet(stream)? {
        if packet.track_id == stream.track_id {
            seen = true;
            if let Some(frame_bytes) = pcm_frame_bytes {
                total = total.saturating_add(packet.data.len() as u64 / frame_bytes);
            } else {
                total = total.saturating_add(packet.dur.get());
            }
        }
    }
    if !seen {
        return Ok(None);
    }
    if pcm_frame_bytes.is_some() {
        return Ok(Some(total));
    }
    // Packet durations are in time-base ticks; convert to frames at the stream's rate.
    let frames = match stream.time_base {
        Some(tb) => {
            let ticks = u128::from(total) * u128::from(tb.numer.get());
            let frames = ticks * u128::from(stream.sample_rate) / u128::from(tb.denom.get());
            u64::try_from(frames).unwrap_or(u64::MAX)
        }
        None => total,
    };
    Ok(Some(frames))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Cursor;

    fn wav_i16_mono(rate: u32, samples: &[i16]) -> Vec<u8> {
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut cursor = Cursor::new(Vec::new());
        {
            let mut writer = hound::WavWriter::new(&mut cursor, spec).expect("writer");
            for &s in samples {
                writer.write_sample(s).expect("sample");
            }
            writer.finalize().expect("finalize");
        }
        cursor.into_inner()
    }

    fn wav_with_spec(spec: hound::WavSpec, frames: usize) -> Vec<u8> {
        let mut cursor = Cursor::new(Vec::new());
        {
            let mut writer = hound::WavWriter::new(&mut cursor, spec).expect("writer");
            for i in 0..frames * usize::from(spec.channels) {
                match spec.sample_format {
                    hound::SampleFormat::Float => writer.write_sample(0.25f32).expect("sample"),
                    hound::SampleFormat::Int => writer.write_sample((i % 100) as i32).expect("s"),
                }
            }
            writer.finalize().expect("finalize");
        }
        cursor.into_inner()
    }

    /// Hand-built minimal AIFF (big-endian 16-bit PCM), so AIFF is covered without fixtures.
    pub(crate) fn aiff_i16(rate: u32, channels: u16, interleaved: &[i16]) -> Vec<u8> {
        let frames = interleaved.len() as u32 / u32::from(channels);
        let mut comm = Vec::new();
        comm.extend_from_slice(&channels.to_be_bytes());
        comm.extend_from_slice(&frames.to_be_bytes());
        comm.extend_from_slice(&16u16.to_be_bytes());
        comm.extend_from_slice(&extended_f80(rate));
        let mut ssnd = vec![0u8; 8]; // offset + block size
        for s in interleaved {
            ssnd.extend_from_slice(&s.to_be_bytes());
        }
        let mut body = b"AIFF".to_vec();
        body.extend_from_slice(b"COMM");
        body.extend_from_slice(&(comm.len() as u32).to_be_bytes());
        body.extend_from_slice(&comm);
        body.extend_from_slice(b"SSND");
        body.extend_from_slice(&(ssnd.len() as u32).to_be_bytes());
        body.extend_from_slice(&ssnd);
        let mut out = b"FORM".to_vec();
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend_from_slice(&body);
        out
    }

    /// 80-bit IEEE extended encoding of an integer sample rate, as AIFF's COMM chunk wants.
    fn extended_f80(rate: u32) -> [u8; 10] {
        let mut out = [0u8; 10];
        if rate == 0 {
            return out;
        }
        let shift = rate.leading_zeros();
        let exponent = 16383 + 31 - shift as u16;
        let mantissa = (u64::from(rate) << shift) << 32;
        out[..2].copy_from_slice(&exponent.to_be_bytes());
        out[2..].copy_from_slice(&mantissa.to_be_bytes());
        out
    }

    #[test]
    fn probes_16bit_mono_16k() {
        let bytes = wav_i16_mono(16_000, &vec![0i16; 8000]);
        let info = probe(&bytes).expect("probe");
        assert_eq!(info.format, "wav");
        assert_eq!(info.sample_rate, 16_000);
        assert_eq!(info.channels, 1);
        assert_eq!(info.frames, Some(8000));
        assert_eq!(info.duration_seconds, Some(0.5));
    }

    #[test]
    fn probes_24bit_stereo_44k() {
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 44_100,
            bits_per_sample: 24,
            sample_format: hound::SampleFormat::Int,
        };
        let info = probe(&wav_with_spec(spec, 44_100)).expect("probe");
        assert_eq!(
            (info.format, info.sample_rate, info.channels),
            ("wav", 44_100, 2)
        );
        assert_eq!(info.frames, Some(44_100));
        assert_eq!(info.duration_seconds, Some(1.0));
    }

    #[test]
    fn probes_32bit_float() {
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 48_000,
            bits_per_sample: 32,
            sample_format: hound::SampleFormat::Float,
        };
        let info = probe(&wav_with_spec(spec, 12_000)).expect("probe");
        assert_eq!((info.sample_rate, info.channels), (48_000, 1));
        assert_eq!(info.frames, Some(12_000));
        assert_eq!(info.duration_seconds, Some(0.25));
    }

    #[test]
    fn probes_aiff() {
        let bytes = aiff_i16(22_050, 2, &vec![0i16; 2 * 2205]);
        let info = probe(&bytes).expect("probe");
        assert_eq!(info.format, "aiff");
        assert_eq!((info.sample_rate, info.channels), (22_050, 2));
        assert_eq!(info.frames, Some(2205));
        assert_eq!(info.duration_seconds, Some(0.1));
    }

    #[test]
    fn empty_and_random_bytes_are_errors() {
        assert_eq!(
            probe(&[]).expect_err("empty").message,
            "invalid audio: empty input"
        );
        // Deterministic xorshift noise: no RNG dependency needed.
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        for len in [1usize, 7, 64, 1000, 10_000] {
            let noise: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    (state >> 24) as u8
                })
                .collect();
            let err = probe(&noise).expect_err("noise must not probe");
            assert!(err.message.starts_with("invalid audio"), "{err}");
        }
        let err = probe(b"this is plainly text, not audio at all").expect_err("text");
        assert_eq!(err.message, "invalid audio: unrecognised format");
    }

    #[test]
    fn every_prefix_of_a_wav_is_ok_or_err() {
        let bytes = wav_i16_mono(8_000, &(0..200).map(|i| i * 100).collect::<Vec<i16>>());
        for len in 0..bytes.len() {
            let prefix = &bytes[..len];
            match probe(prefix) {
                Ok(info) => panic!("prefix {len} should be rejected, got {info:?}"),
                Err(e) => assert!(!e.message.is_empty()),
            }
        }
        assert!(probe(&bytes).is_ok());
    }

    #[test]
    fn truncated_data_is_reported_as_such() {
        let bytes = wav_i16_mono(8_000, &vec![1i16; 1000]);
        let err = probe(&bytes[..bytes.len() - 10]).expect_err("truncated");
        assert!(
            err.message.starts_with("invalid audio: truncated WAV data"),
            "{err}"
        );
        let err = probe(&bytes[..20]).expect_err("truncated header");
        assert_eq!(err.message, "invalid audio: truncated WAV header");
    }

    #[test]
    fn zero_channels_and_zero_rate_are_errors() {
        let good = wav_i16_mono(8_000, &[0; 16]);
        // Canonical 44-byte header: channels at 22..24, sample rate at 24..28.
        let mut zero_channels = good.clone();
        zero_channels[22..24].copy_from_slice(&0u16.to_le_bytes());
        let err = probe(&zero_channels).expect_err("0 channels");
        assert!(
            err.message.starts_with("invalid audio: corrupt WAV header"),
            "{err}"
        );

        let mut zero_rate = good.clone();
        zero_rate[24..28].copy_from_slice(&0u32.to_le_bytes());
        let err = probe(&zero_rate).expect_err("0 Hz");
        assert_eq!(
            err.message,
            "invalid audio: WAV header declares a sample rate of 0 Hz"
        );

        let mut absurd_rate = good;
        absurd_rate[24..28].copy_from_slice(&u32::MAX.to_le_bytes());
        let err = probe(&absurd_rate).expect_err("absurd rate");
        assert!(err.message.contains("implausible sample rate"), "{err}");
    }

    #[test]
    fn absurd_data_length_is_truncation_not_overflow() {
        let mut bytes = wav_i16_mono(8_000, &[0; 16]);
        // Data chunk length at 40..44; also enlarge the RIFF length so the chunk is "in bounds".
        bytes[4..8].copy_from_slice(&u32::MAX.wrapping_sub(1).to_le_bytes());
        bytes[40..44].copy_from_slice(&0xFFFF_0000u32.to_le_bytes());
        let err = probe(&bytes).expect_err("absurd length");
        assert!(
            err.message.starts_with("invalid audio: truncated WAV data"),
            "{err}"
        );
    }

    #[test]
    fn streaming_wav_without_length_is_counted_by_demuxing() {
        // ffmpeg-style piped WAV: RIFF and data lengths are 0xFFFFFFFF ("unknown").
        let mut bytes = wav_i16_mono(8_000, &vec![7i16; 3000]);
        bytes[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        bytes[40..44].copy_from_slice(&u32::MAX.to_le_bytes());
        let info = probe(&bytes).expect("probe");
        assert_eq!(info.frames, Some(3000));
        assert_eq!(info.duration_seconds, Some(3000.0 / 8000.0));
    }

    #[test]
    fn media_error_displays_its_message() {
        let e = MediaError::invalid("invalid audio: unrecognised format".to_string());
        assert_eq!(e.to_string(), "invalid audio: unrecognised format");
        let boxed: Box<dyn std::error::Error> = Box::new(e);
        assert_eq!(boxed.to_string(), "invalid audio: unrecognised format");
    }
}
