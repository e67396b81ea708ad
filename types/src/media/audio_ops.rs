//! Full decoding, mono downmix and resampling of in-memory audio into planar `f32` PCM.
//!
//! These functions back SQL `audio_to_tensor(audio, rate)`, which returns a
//! `[channels, frames]` float tensor: [`Pcm::samples`] is laid out exactly in that row-major
//! order (all of channel 0, then all of channel 1, …) so it can be handed to a tensor without
//! a transpose.
//!
//! Decoding is bounded: audio longer than [`MAX_DECODE_SECONDS`] or whose decoded samples
//! would exceed [`MAX_DECODED_BYTES`] is refused with a [`MediaError`] instead of exhausting
//! the query's memory. All failures on untrusted bytes are errors, never panics.

use std::ops::Range;

use rubato::audioadapter_buffers::direct::SequentialSlice;
use rubato::{Fft, FixedSync, Resampler};
use symphonia::core::codecs::audio::AudioDecoderOptions;
use symphonia::core::errors::Error as SymphoniaError;

use super::audio_probe::{self, MAX_SAMPLE_RATE, MediaError};

/// Longest audio [`decode`] accepts, in seconds at the stream's own sample rate.
pub const MAX_DECODE_SECONDS: u64 = 3600;

/// Largest decoded (or resampled) output accepted, in bytes of `f32` samples (1 GiB).
pub const MAX_DECODED_BYTES: u64 = 1 << 30;

/// Bytes per output sample: everything is converted to `f32`.
const SAMPLE_BYTES: u64 = std::mem::size_of::<f32>() as u64;

/// Chunk-size hint for the FFT resampler. Larger chunks mean larger FFT blocks, which move the
/// anti-aliasing cutoff closer to Nyquist; 4096 gives blocks of about 0.1 s at common rates
/// (e.g. 4410 input frames for 44.1 kHz -> 16 kHz), cheap for whole-clip conversion.
const RESAMPLER_CHUNK: usize = 4096;

/// Decoded audio: planar `f32` samples.
#[derive(Debug, Clone, PartialEq)]
pub struct Pcm {
    /// Sample rate in Hz.
    pub sample_rate: u32,
    /// Number of channels (at least 1 for anything produced by this module).
    pub channels: u16,
    /// Samples per channel.
    pub frames: usize,
    /// `channels * frames` samples, planar: channel 0's frames, then channel 1's, …
    ///
    /// [`decode`] guarantees every sample is finite and within `[-1, 1]`: integer formats map
    /// to `[-1, 1)`, float formats are clipped to full scale (NaN becomes 0). [`resample`]
    /// does not re-clip, so band-limited ringing may overshoot ±1 very slightly.
    pub samples: Vec<f32>,
}

impl Pcm {
    /// The samples of channel `c`, or `None` if `c` is out of range.
    pub fn channel(&self, c: usize) -> Option<&[f32]> {
        if c >= usize::from(self.channels) {
            return None;
        }
        let start = c.checked_mul(self.frames)?;
        self.samples.get(start..start.checked_add(self.frames)?)
    }
}

/// Decodes a whole audio blob (WAV, AIFF, FLAC, Ogg Vorbis, MP3) to planar `f32`.
///
/// Encoder delay and padding are trimmed (gapless), so `frames` matches
/// [`AudioInfo::frames`](super::audio_probe::AudioInfo::frames) for containers that state it.
/// Packets the codec rejects as corrupt are skipped (the usual behaviour of media players for
/// lossy streams); if no packet decodes at all, an error is returned. Where the stated length
/// is exact (uncompressed WAV/AIFF, FLAC) a stream that ends early is an error
/// ("invalid audio: truncated … data"), not a silently shortened signal; an MP3 cut short
/// decodes to what is present, since its stated length is only an estimate.
pub fn decode(bytes: &[u8]) -> Result<Pcm, MediaError> {
    audio_probe::guard(|| decode_unguarded(bytes))
}

/// Resamples `pcm` to `rate` Hz with rubato's synchronous FFT resampler.
///
/// The output has exactly `round(frames * rate / pcm.sample_rate)` frames and is aligned with
/// the input (the resampler's delay is trimmed), so sample `n` of the output sits at time
/// `n / rate` like sample `m` of the input sits at `m / pcm.sample_rate`. When `rate` equals
/// the input rate the input is returned unchanged; because `pcm` is borrowed that is a clone
/// (`to_tensor` avoids the copy internally by passing ownership).
///
/// Errors: `rate` of 0 or above [`MAX_SAMPLE_RATE`], an inconsistent `Pcm`, or an output
/// larger than [`MAX_DECODED_BYTES`].
pub fn resample(pcm: &Pcm, rate: u32) -> Result<Pcm, MediaError> {
    check_target_rate(rate)?;
    check_pcm(pcm)?;
    if pcm.sample_rate == rate {
        return Ok(pcm.clone());
    }
    resample_checked(pcm, rate)
}

/// Decodes `bytes`, optionally downmixes to mono (mean of the channels) and optionally
/// resamples to `rate` Hz: the function behind SQL `audio_to_tensor(audio, rate)`.
///
/// The result's `samples` are the `[channels, frames]` tensor in row-major order. Downmixing
/// happens before resampling so only one channel is resampled. An invalid `rate` is rejected
/// before any decoding work is done.
pub fn to_tensor(bytes: &[u8], rate: Option<u32>, mono: bool) -> Result<Pcm, MediaError> {
    if let Some(rate) = rate {
        check_target_rate(rate)?;
    }
    let mut pcm = decode(bytes)?;
    if mono && pcm.channels > 1 {
        pcm = downmix_to_mono(pcm);
    }
    match rate {
        // Owned path: a same-rate request moves the buffer instead of cloning it.
        Some(rate) if rate != pcm.sample_rate => resample_checked(&pcm, rate),
        _ => Ok(pcm),
    }
}

fn decode_unguarded(bytes: &[u8]) -> Result<Pcm, MediaError> {
    let mut stream = audio_probe::open(bytes)?;
    let label = stream.label;
    let sample_rate = stream.sample_rate;
    let channels = usize::from(stream.channels);
    let limits = Limits::new(sample_rate, channels);

    // Fail fast on a header that already announces too much audio.
    if let Some(frames) = stream.frames {
        limits.check(frames)?;
    }

    let mut decoder = symphonia::default::get_codecs()
        .make_audio_decoder(&stream.params, &AudioDecoderOptions::default())
        .map_err(|e| match e {
            SymphoniaError::Unsupported(what) => MediaError::unsupported(format!(
                "unsupported audio: this {label} codec variant is not supported ({what})"
            )),
            other => MediaError::invalid(format!(
                "invalid audio: cannot initialise the {label} decoder ({other})"
            )),
        })?;

    // Pre-size from the header, but never believe more than 16 frames per input byte (more
    // than common codecs reach at usual bitrates; beyond it the buffer just grows): a lying
    // header in a tiny file must not reserve a gigabyte. Over-reservation is only virtual
    // memory (zeroed allocation) and is released by `finish`.
    let plausible = (bytes.len() as u64).saturating_mul(16);
    let hint = stream
        .frames
        .unwrap_or(u64::from(sample_rate))
        .min(plausible)
        .min(limits.max_frames);
    let mut out = PlanarBuilder::new(
        channels,
        usize::try_from(hint).unwrap_or(0),
        usize::try_from(limits.max_frames).unwrap_or(usize::MAX),
    )?;

    let mut scratch: Vec<Vec<f32>> = Vec::new();
    let mut rejected_packets = 0usize;
    let mut first_rejection = None;

    while let Some(packet) = audio_probe::read_packet(&mut stream)? {
        if packet.track_id != stream.track_id {
            continue;
        }
        match decoder.decode(&packet) {
            Ok(buf) => {
                if buf.spec().rate() != sample_rate || buf.num_planes() != channels {
                    return Err(MediaError::unsupported(format!(
                        "unsupported audio: the {label} stream changes sample rate or channel \
                         count mid-stream"
                    )));
                }
                buf.copy_to_vecs_planar::<f32>(&mut scratch);
                limits.check((out.frames as u64).saturating_add(buf.frames() as u64))?;
                for plane in scratch.iter_mut() {
                    clip_to_full_scale(plane);
                }
                out.push(&scratch)?;
            }
            // Per symphonia's contract these only invalidate the one packet.
            Err(SymphoniaError::DecodeError(what)) => {
                rejected_packets = rejected_packets.saturating_add(1);
                first_rejection.get_or_insert_with(|| what.to_string());
            }
            Err(SymphoniaError::IoError(e)) => {
                rejected_packets = rejected_packets.saturating_add(1);
                first_rejection.get_or_insert_with(|| e.to_string());
            }
            Err(SymphoniaError::ResetRequired) => {
                return Err(MediaError::unsupported(format!(
                    "unsupported audio: the {label} stream changes its parameters mid-stream"
                )));
            }
            Err(SymphoniaError::Unsupported(what)) => {
                return Err(MediaError::unsupported(format!(
                    "unsupported audio: this {label} codec feature is not supported ({what})"
                )));
            }
            Err(other) => {
                return Err(MediaError::invalid(format!(
                    "invalid audio: corrupt {label} data ({other})"
                )));
            }
        }
    }

    if out.frames == 0 && rejected_packets > 0 {
        return Err(MediaError::invalid(format!(
            "invalid audio: no decodable audio in the {label} stream ({})",
            first_rejection.unwrap_or_default()
        )));
    }

    // Symphonia's RIFF/FLAC demuxers hand out a short final packet instead of failing when
    // the data stops early, so truncation shows up only as a frame-count shortfall.
    if let Some(stated) = stream.frames
        && audio_probe::stated_length_is_exact(&stream)
        && (out.frames as u64) < stated
    {
        return Err(MediaError::invalid(format!(
            "invalid audio: truncated {label} data (header declares {stated} frames, only {} \
             present)",
            out.frames
        )));
    }

    let frames = out.frames;
    Ok(Pcm {
        sample_rate,
        channels: stream.channels,
        frames,
        samples: out.finish()?,
    })
}

/// Decode limits for one stream, expressed in frames.
struct Limits {
    max_frames_by_time: u64,
    max_frames_by_size: u64,
    max_frames: u64,
}

impl Limits {
    fn new(sample_rate: u32, channels: usize) -> Self {
        let max_frames_by_time = u64::from(sample_rate).saturating_mul(MAX_DECODE_SECONDS);
        let bytes_per_frame = (channels as u64).saturating_mul(SAMPLE_BYTES).max(1);
        let max_frames_by_size = MAX_DECODED_BYTES / bytes_per_frame;
        Limits {
            max_frames_by_time,
            max_frames_by_size,
            max_frames: max_frames_by_time.min(max_frames_by_size),
        }
    }

    fn check(&self, frames: u64) -> Result<(), MediaError> {
        if frames > self.max_frames_by_time {
            return Err(MediaError::too_large(format!(
                "audio too long to decode: longer than the {MAX_DECODE_SECONDS} s limit"
            )));
        }
        if frames > self.max_frames_by_size {
            return Err(MediaError::too_large(format!(
                "audio too large to decode: decoded samples would exceed {} MiB",
                MAX_DECODED_BYTES >> 20
            )));
        }
        Ok(())
    }
}

/// Clamps into `[-1, 1]` and zeroes NaN, so `decode`'s documented range holds for float
/// sources too (and a NaN cannot smear across a whole FFT block when resampling).
fn clip_to_full_scale(plane: &mut [f32]) {
    for s in plane {
        if s.is_nan() {
            *s = 0.0;
        } else {
            *s = s.clamp(-1.0, 1.0);
        }
    }
}

/// Accumulates decoded packets directly in planar layout.
///
/// Each channel owns a `cap`-frame region of one buffer, so a stream whose header stated its
/// length is written in place with no final transpose or concatenation: peak memory is about
/// the size of the result rather than twice it. Regions are compacted at the end if the
/// stream was shorter than reserved.
struct PlanarBuilder {
    channels: usize,
    cap: usize,
    /// Growth never reserves beyond this (the decode limit), so doubling cannot overshoot it.
    max_cap: usize,
    frames: usize,
    buf: Vec<f32>,
}

impl PlanarBuilder {
    fn new(channels: usize, cap: usize, max_cap: usize) -> Result<Self, MediaError> {
        let cap = cap.min(max_cap);
        let len = channels.checked_mul(cap).ok_or_else(internal_overflow)?;
        Ok(PlanarBuilder {
            channels,
            cap,
            max_cap,
            frames: 0,
            // `vec![0.0; n]` uses a zeroed allocation: untouched pages cost no physical memory.
            buf: vec![0.0; len],
        })
    }

    fn region(&self, channel: usize, frames: Range<usize>) -> Result<Range<usize>, MediaError> {
        let base = channel
            .checked_mul(self.cap)
            .ok_or_else(internal_overflow)?;
        let start = base
            .checked_add(frames.start)
            .ok_or_else(internal_overflow)?;
        let end = base.checked_add(frames.end).ok_or_else(internal_overflow)?;
        Ok(start..end)
    }

    fn push(&mut self, planes: &[Vec<f32>]) -> Result<(), MediaError> {
        let n = planes.first().map_or(0, Vec::len);
        let new_frames = self.frames.checked_add(n).ok_or_else(internal_overflow)?;
        if new_frames > self.cap {
            // Geometric growth keeps streams with no (or a wrong) stated length linear-time.
            let doubled = self.cap.saturating_mul(2).min(self.max_cap);
            self.grow(new_frames.max(doubled))?;
        }
        for (channel, plane) in planes.iter().enumerate().take(self.channels) {
            let range = self.region(channel, self.frames..new_frames)?;
            let dst = self.buf.get_mut(range).ok_or_else(internal_overflow)?;
            let src = plane.get(..n).ok_or_else(internal_overflow)?;
            dst.copy_from_slice(src);
        }
        self.frames = new_frames;
        Ok(())
    }

    fn grow(&mut self, new_cap: usize) -> Result<(), MediaError> {
        let len = self
            .channels
            .checked_mul(new_cap)
            .ok_or_else(internal_overflow)?;
        let mut grown = vec![0.0f32; len];
        for channel in 0..self.channels {
            let src = self.region(channel, 0..self.frames)?;
            let dst_start = channel.checked_mul(new_cap).ok_or_else(internal_overflow)?;
            let dst = grown
                .get_mut(dst_start..dst_start.saturating_add(self.frames))
                .ok_or_else(internal_overflow)?;
            dst.copy_from_slice(self.buf.get(src).ok_or_else(internal_overflow)?);
        }
        self.buf = grown;
        self.cap = new_cap;
        Ok(())
    }

    fn finish(mut self) -> Result<Vec<f32>, MediaError> {
        if self.frames != self.cap {
            // Moving channel c from c*cap to c*frames only ever moves data leftwards, so doing
            // channels in increasing order never overwrites data not yet moved.
            for channel in 1..self.channels {
                let src = self.region(channel, 0..self.frames)?;
                let dst = channel
                    .checked_mul(self.frames)
                    .ok_or_else(internal_overflow)?;
                if src.end > self.buf.len() {
                    return Err(internal_overflow());
                }
                self.buf.copy_within(src, dst);
            }
            self.buf.truncate(self.channels * self.frames);
            self.buf.shrink_to_fit();
        }
        Ok(self.buf)
    }
}

/// Should be unreachable (sizes are bounded by [`Limits`] first); an error beats a panic.
fn internal_overflow() -> MediaError {
    MediaError::internal("internal error: audio buffer size overflow")
}

/// Averages all channels into one, reusing channel 0's storage.
fn downmix_to_mono(mut pcm: Pcm) -> Pcm {
    let frames = pcm.frames;
    let channels = usize::from(pcm.channels);
    // Checked: `Pcm` fields are public, so the product may come from a caller, not a decoder.
    if frames > 0 && channels > 1 && Some(pcm.samples.len()) == frames.checked_mul(channels) {
        let (first, rest) = pcm.samples.split_at_mut(frames);
        for plane in rest.chunks_exact(frames) {
            for (acc, s) in first.iter_mut().zip(plane) {
                *acc += *s;
            }
        }
        let scale = 1.0 / channels as f32;
        for acc in first.iter_mut() {
            *acc *= scale;
        }
    }
    pcm.samples.truncate(frames);
    pcm.samples.shrink_to_fit();
    pcm.channels = 1;
    pcm
}

fn check_target_rate(rate: u32) -> Result<(), MediaError> {
    if rate == 0 || rate > MAX_SAMPLE_RATE {
        return Err(MediaError::argument(format!(
            "invalid sample rate: {rate} Hz (must be between 1 and {MAX_SAMPLE_RATE} Hz)"
        )));
    }
    Ok(())
}

/// `Pcm` has public fields, so a caller can build an inconsistent one; reject it cleanly.
fn check_pcm(pcm: &Pcm) -> Result<(), MediaError> {
    if pcm.sample_rate == 0 || pcm.sample_rate > MAX_SAMPLE_RATE {
        return Err(MediaError::invalid(format!(
            "invalid audio: sample rate {} Hz is out of range",
            pcm.sample_rate
        )));
    }
    if pcm.channels == 0 {
        return Err(MediaError::invalid("invalid audio: 0 channels"));
    }
    let expected = usize::from(pcm.channels).checked_mul(pcm.frames);
    if expected != Some(pcm.samples.len()) {
        return Err(MediaError::invalid(format!(
            "invalid audio: {} samples do not match {} channels x {} frames",
            pcm.samples.len(),
            pcm.channels,
            pcm.frames
        )));
    }
    Ok(())
}

/// Resamples a validated `pcm` whose rate differs from `rate`.
///
/// Uses rubato's `Fft` (synchronous) resampler: the ratio is fixed for a whole clip, which is
/// exactly its use case, and it gives sinc-quality anti-aliasing at a fraction of the cost of
/// the asynchronous sinc resampler. Channels are resampled one at a time with a single-channel
/// resampler, so its working memory does not scale with the channel count (FFT blocks can be
/// as large as the rates themselves when the two rates share no common factor).
fn resample_checked(pcm: &Pcm, rate: u32) -> Result<Pcm, MediaError> {
    check_pcm(pcm)?;
    let in_rate = pcm.sample_rate;
    let channels = usize::from(pcm.channels);
    let frames = pcm.frames;

    // round(frames * rate / in_rate), in exact integer arithmetic.
    let num = (frames as u128) * u128::from(rate) * 2 + u128::from(in_rate);
    let out_frames = num / (u128::from(in_rate) * 2);
    let out_bytes = out_frames
        .saturating_mul(channels as u128)
        .saturating_mul(u128::from(SAMPLE_BYTES));
    if out_bytes > u128::from(MAX_DECODED_BYTES) {
        return Err(MediaError::too_large(format!(
            "audio too large to resample: output would exceed {} MiB",
            MAX_DECODED_BYTES >> 20
        )));
    }
    let out_frames = usize::try_from(out_frames).map_err(|_| internal_overflow())?;
    let mut samples = vec![0.0f32; channels * out_frames];
    if frames == 0 || out_frames == 0 {
        return Ok(Pcm {
            sample_rate: rate,
            channels: pcm.channels,
            frames: out_frames,
            samples,
        });
    }

    let mut resampler = Fft::<f32>::new(
        in_rate as usize,
        rate as usize,
        RESAMPLER_CHUNK,
        1,
        FixedSync::Both,
    )
    .map_err(|e| MediaError::argument(format!("cannot resample {in_rate} Hz to {rate} Hz: {e}")))?;

    // rubato needs room for its delay and a final partial chunk beyond the real output.
    let scratch_frames = resampler.process_all_needed_output_len(frames);
    let mut scratch = vec![0.0f32; scratch_frames];

    for channel in 0..channels {
        let input = pcm.channel(channel).ok_or_else(internal_overflow)?;
        let input = SequentialSlice::new(input, 1, frames)
            .map_err(|e| MediaError::internal(format!("internal error: resampler input: {e}")))?;
        let mut output = SequentialSlice::new_mut(&mut scratch, 1, scratch_frames)
            .map_err(|e| MediaError::internal(format!("internal error: resampler output: {e}")))?;
        // process_all_into_buffer does not reset by itself; state must not leak between
        // channels.
        resampler.reset();
        // It trims the resampler's output_delay() from the start, aligning output to input.
        resampler
            .process_all_into_buffer(&input, &mut output, frames, None)
            .map_err(|e| MediaError::internal(format!("resampling failed: {e}")))?;
        let dst_start = channel * out_frames;
        let dst = samples
            .get_mut(dst_start..dst_start + out_frames)
            .ok_or_else(internal_overflow)?;
        // `scratch_frames >= ceil(frames * ratio) >= out_frames`; frames past what rubato
        // reports as produced are still valid (they come from the zero-padded tail).
        let src = scratch.get(..out_frames).ok_or_else(internal_overflow)?;
        dst.copy_from_slice(src);
    }

    Ok(Pcm {
        sample_rate: rate,
        channels: pcm.channels,
        frames: out_frames,
        samples,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::PI;
    use std::io::Cursor;

    fn write_wav(
        spec: hound::WavSpec,
        write: impl FnOnce(&mut hound::WavWriter<&mut Cursor<Vec<u8>>>),
    ) -> Vec<u8> {
        let mut cursor = Cursor::new(Vec::new());
        {
            let mut writer = hound::WavWriter::new(&mut cursor, spec).expect("writer");
            write(&mut writer);
            writer.finalize().expect("finalize");
        }
        cursor.into_inner()
    }

    fn sine(freq: f64, rate: u32, n: usize, amp: f64) -> Vec<f64> {
        (0..n)
            .map(|i| amp * (2.0 * PI * freq * i as f64 / f64::from(rate)).sin())
            .collect()
    }

    fn sine_wav_i16(rate: u32, n: usize) -> Vec<u8> {
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        write_wav(spec, |w| {
            for s in sine(440.0, rate, n, 0.5) {
                w.write_sample((s * 32767.0).round() as i16)
                    .expect("sample");
            }
        })
    }

    fn stereo_dc_wav_24(rate: u32, n: usize) -> Vec<u8> {
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: rate,
            bits_per_sample: 24,
            sample_format: hound::SampleFormat::Int,
        };
        let half = 1 << 22; // 0.5 of 24-bit full scale
        write_wav(spec, |w| {
            for _ in 0..n {
                w.write_sample(half).expect("left");
                w.write_sample(-half).expect("right");
            }
        })
    }

    /// Number of sign changes; a pure tone of f Hz over T seconds has about 2*f*T.
    fn zero_crossings(x: &[f32]) -> usize {
        x.windows(2)
            .filter(|w| (w[0] < 0.0) != (w[1] < 0.0))
            .count()
    }

    #[test]
    fn decodes_16bit_sine_values() {
        let rate = 16_000;
        let bytes = sine_wav_i16(rate, 16_000);
        let pcm = decode(&bytes).expect("decode");
        assert_eq!(
            (pcm.sample_rate, pcm.channels, pcm.frames),
            (16_000, 1, 16_000)
        );
        assert_eq!(pcm.samples.len(), 16_000);
        let ideal = sine(440.0, rate, 16_000, 0.5);
        for i in [0usize, 1, 9, 10, 100, 5_000, 15_999] {
            let got = f64::from(pcm.samples[i]);
            assert!(
                (got - ideal[i]).abs() < 1e-3,
                "sample {i}: {got} vs {}",
                ideal[i]
            );
        }
        assert!(pcm.samples.iter().all(|s| (-1.0..=1.0).contains(s)));
    }

    #[test]
    fn stereo_channel_order_is_left_then_right() {
        let pcm = decode(&stereo_dc_wav_24(44_100, 1000)).expect("decode");
        assert_eq!(
            (pcm.sample_rate, pcm.channels, pcm.frames),
            (44_100, 2, 1000)
        );
        let left = pcm.channel(0).expect("left");
        let right = pcm.channel(1).expect("right");
        assert!(left.iter().all(|&s| (s - 0.5).abs() < 1e-6), "{}", left[0]);
        assert!(
            right.iter().all(|&s| (s + 0.5).abs() < 1e-6),
            "{}",
            right[0]
        );
        assert!(pcm.channel(2).is_none());
    }

    #[test]
    fn decodes_32bit_float_and_clips_out_of_range() {
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 8_000,
            bits_per_sample: 32,
            sample_format: hound::SampleFormat::Float,
        };
        let values = [0.25f32, -0.75, 1.5, -2.0, f32::NAN, 0.0];
        let bytes = write_wav(spec, |w| {
            for v in values {
                w.write_sample(v).expect("sample");
            }
        });
        let pcm = decode(&bytes).expect("decode");
        assert_eq!(pcm.samples, vec![0.25, -0.75, 1.0, -1.0, 0.0, 0.0]);
    }

    #[test]
    fn decodes_aiff_big_endian() {
        let bytes =
            super::super::audio_probe::tests::aiff_i16(8_000, 2, &[16384, -16384, 8192, -8192]);
        let pcm = decode(&bytes).expect("decode aiff");
        assert_eq!((pcm.channels, pcm.frames), (2, 2));
        assert_eq!(pcm.samples, vec![0.5, 0.25, -0.5, -0.25]);
    }

    #[test]
    fn resample_44k1_to_16k_keeps_a_440hz_sine_aligned() {
        let (in_rate, out_rate, n) = (44_100u32, 16_000u32, 44_100usize);
        let input = Pcm {
            sample_rate: in_rate,
            channels: 1,
            frames: n,
            samples: sine(440.0, in_rate, n, 0.5)
                .iter()
                .map(|&s| s as f32)
                .collect(),
        };
        let out = resample(&input, out_rate).expect("resample");
        assert_eq!((out.sample_rate, out.channels), (16_000, 1));
        assert_eq!(out.frames, 16_000);
        assert_eq!(out.samples.len(), 16_000);

        // 440 Hz for 1 s: ~880 sign changes.
        let zc = zero_crossings(&out.samples);
        assert!((878..=882).contains(&zc), "zero crossings {zc}");

        // Aligned with the ideal sine at the new rate (delay trimmed): compare away from the
        // edges, where the resampler sees the implicit zero padding.
        let ideal = sine(440.0, out_rate, out.frames, 0.5);
        let mid = 500..out.frames - 500;
        let max_err = mid
            .clone()
            .map(|i| (f64::from(out.samples[i]) - ideal[i]).abs())
            .fold(0.0, f64::max);
        assert!(max_err < 2e-3, "max error {max_err}");
        let dot: f64 = mid
            .clone()
            .map(|i| f64::from(out.samples[i]) * ideal[i])
            .sum();
        let norm_a: f64 = mid.clone().map(|i| f64::from(out.samples[i]).powi(2)).sum();
        let norm_b: f64 = mid.map(|i| ideal[i].powi(2)).sum();
        let corr = dot / (norm_a.sqrt() * norm_b.sqrt());
        assert!(corr > 0.9999, "correlation {corr}");
    }

    #[test]
    fn resample_frame_count_rounds() {
        for (frames, in_rate, out_rate) in [
            (1usize, 44_100u32, 16_000u32),
            (7, 16_000, 44_100),
            (1000, 48_000, 44_100),
            (12_345, 22_050, 16_000),
            (3, 8_000, 7_919),
        ] {
            let pcm = Pcm {
                sample_rate: in_rate,
                channels: 2,
                frames,
                samples: vec![0.1; 2 * frames],
            };
            let out = resample(&pcm, out_rate).expect("resample");
            let expected =
                ((frames as f64) * f64::from(out_rate) / f64::from(in_rate)).round() as usize;
            assert_eq!(out.frames, expected, "{frames} @ {in_rate} -> {out_rate}");
            assert_eq!(out.samples.len(), 2 * expected);
        }
    }

    #[test]
    fn resample_keeps_channels_separate() {
        let pcm = decode(&stereo_dc_wav_24(44_100, 44_100)).expect("decode");
        let out = resample(&pcm, 16_000).expect("resample");
        assert_eq!((out.channels, out.frames), (2, 16_000));
        let left = out.channel(0).expect("left");
        let right = out.channel(1).expect("right");
        assert!(left[1000..15_000].iter().all(|&s| (s - 0.5).abs() < 1e-3));
        assert!(right[1000..15_000].iter().all(|&s| (s + 0.5).abs() < 1e-3));
    }

    #[test]
    fn resample_same_rate_and_invalid_rates() {
        let pcm = Pcm {
            sample_rate: 16_000,
            channels: 1,
            frames: 3,
            samples: vec![0.1, 0.2, 0.3],
        };
        assert_eq!(resample(&pcm, 16_000).expect("same rate"), pcm);
        let err = resample(&pcm, 0).expect_err("rate 0");
        assert!(
            err.message.starts_with("invalid sample rate: 0 Hz"),
            "{err}"
        );
        assert!(resample(&pcm, MAX_SAMPLE_RATE + 1).is_err());
        let empty = Pcm {
            frames: 0,
            samples: vec![],
            ..pcm.clone()
        };
        let out = resample(&empty, 8_000).expect("empty");
        assert_eq!(
            (out.frames, out.samples.len(), out.sample_rate),
            (0, 0, 8_000)
        );
        let broken = Pcm {
            frames: 4,
            ..pcm.clone()
        };
        assert!(resample(&broken, 8_000).is_err());
        let no_channels = Pcm {
            channels: 0,
            frames: 0,
            samples: vec![],
            ..pcm
        };
        assert!(resample(&no_channels, 8_000).is_err());
    }

    #[test]
    fn to_tensor_downmixes_and_resamples() {
        let bytes = stereo_dc_wav_24(44_100, 4410);
        let stereo = to_tensor(&bytes, None, false).expect("plain");
        assert_eq!(
            (stereo.channels, stereo.frames, stereo.sample_rate),
            (2, 4410, 44_100)
        );

        let mono = to_tensor(&bytes, None, true).expect("mono");
        assert_eq!((mono.channels, mono.frames), (1, 4410));
        assert!(mono.samples.iter().all(|s| s.abs() < 1e-6));

        // Asymmetric stereo so the mean is non-trivial: L = sine, R = 0 -> mono = sine / 2.
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 44_100,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let left = sine(440.0, 44_100, 44_100, 0.8);
        let bytes = write_wav(spec, |w| {
            for s in &left {
                w.write_sample((s * 32767.0).round() as i16).expect("l");
                w.write_sample(0i16).expect("r");
            }
        });
        let out = to_tensor(&bytes, Some(16_000), true).expect("tensor");
        assert_eq!(
            (out.channels, out.frames, out.sample_rate),
            (1, 16_000, 16_000)
        );
        let ideal = sine(440.0, 16_000, 16_000, 0.4);
        let max_err = (500..15_500)
            .map(|i| (f64::from(out.samples[i]) - ideal[i]).abs())
            .fold(0.0, f64::max);
        assert!(max_err < 2e-3, "max error {max_err}");

        let same = to_tensor(&bytes, Some(44_100), false).expect("same rate");
        assert_eq!((same.channels, same.frames), (2, 44_100));
        assert!(to_tensor(&bytes, Some(0), false).is_err());
    }

    #[test]
    fn decode_errors_are_clean() {
        let err = decode(&[]).err().map(|e| e.message);
        assert_eq!(err.as_deref(), Some("invalid audio: empty input"));
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 32) as u8
            })
            .collect();
        assert!(decode(&noise).is_err());

        let bytes = sine_wav_i16(8_000, 3000);
        for cut in [1, 2, 100, 3000, 5000] {
            let err = decode(&bytes[..bytes.len() - cut]).err().map(|e| e.message);
            let err = err.expect("truncated WAV must not decode");
            assert!(
                err.starts_with("invalid audio: truncated WAV data"),
                "{err}"
            );
        }
    }

    #[test]
    fn every_prefix_of_a_wav_decodes_or_errors() {
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 8_000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let bytes = write_wav(spec, |w| {
            for i in 0..300i16 {
                w.write_sample(i).expect("l");
                w.write_sample(-i).expect("r");
            }
        });
        for len in 0..bytes.len() {
            // Only Ok/Err is acceptable; a panic fails the test.
            let _ = decode(&bytes[..len]);
            let _ = to_tensor(&bytes[..len], Some(16_000), true);
        }
        assert_eq!(decode(&bytes).expect("full").frames, 300);
    }

    #[test]
    fn zero_channels_and_zero_rate_headers_are_errors() {
        let good = sine_wav_i16(8_000, 64);
        let mut zero_channels = good.clone();
        zero_channels[22..24].copy_from_slice(&0u16.to_le_bytes());
        assert!(decode(&zero_channels).is_err());
        let mut zero_rate = good;
        zero_rate[24..28].copy_from_slice(&0u32.to_le_bytes());
        let err = decode(&zero_rate).err().map(|e| e.message);
        assert_eq!(
            err.as_deref(),
            Some("invalid audio: WAV header declares a sample rate of 0 Hz")
        );
    }

    #[test]
    fn streaming_wav_without_length_decodes_fully() {
        // Unknown length: the builder starts from a guess and has to grow.
        let mut bytes = sine_wav_i16(8_000, 20_000);
        bytes[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        bytes[40..44].copy_from_slice(&u32::MAX.to_le_bytes());
        let pcm = decode(&bytes).expect("decode");
        assert_eq!(pcm.frames, 20_000);
        let reference = decode(&sine_wav_i16(8_000, 20_000)).expect("reference");
        assert_eq!(pcm, reference);
    }

    #[test]
    fn over_long_audio_is_refused_before_decoding() {
        // A 44-byte header claiming ~4.3 h of 8 kHz mono 16-bit audio: refused up front.
        let mut bytes = sine_wav_i16(8_000, 16);
        let claimed: u32 = 8_000 * 2 * 3600 * 4;
        bytes[4..8].copy_from_slice(&(claimed + 36).to_le_bytes());
        bytes[40..44].copy_from_slice(&claimed.to_le_bytes());
        let err = decode(&bytes).err().map(|e| e.message).unwrap_or_default();
        assert!(err.starts_with("audio too long to decode"), "{err}");
    }

    #[test]
    fn limits_distinguish_time_and_size() {
        let limits = Limits::new(16_000, 1);
        assert!(limits.check(16_000 * 3600).is_ok());
        assert!(
            limits
                .check(16_000 * 3600 + 1)
                .expect_err("time")
                .message
                .contains("3600 s")
        );
        let wide = Limits::new(48_000, 64);
        assert!(
            wide.check(48_000 * 600)
                .expect_err("size")
                .message
                .contains("MiB")
        );
    }

    #[test]
    fn planar_builder_grows_and_compacts() {
        let mut b = PlanarBuilder::new(2, 2, 100).expect("builder");
        b.push(&[vec![1.0, 2.0, 3.0], vec![-1.0, -2.0, -3.0]])
            .expect("push");
        b.push(&[vec![4.0], vec![-4.0]]).expect("push");
        assert_eq!(b.frames, 4);
        assert_eq!(
            b.finish().expect("finish"),
            vec![1.0, 2.0, 3.0, 4.0, -1.0, -2.0, -3.0, -4.0]
        );
        let b = PlanarBuilder::new(3, 100, 100).expect("builder");
        assert!(b.finish().expect("empty").is_empty());
    }
}
