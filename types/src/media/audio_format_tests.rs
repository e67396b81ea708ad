//! Non-WAV formats, using small fixtures generated offline by `fixtures/make_fixtures.py`
//! (libsndfile via the `soundfile` Python package): a 440 Hz sine at amplitude 0.5, negated on
//! the right channel of the stereo file.

use super::audio_ops::{decode, to_tensor};
use super::audio_probe::probe;
use std::f64::consts::PI;

const FLAC: &[u8] = include_bytes!("fixtures/sine440_16k_mono.flac");
const OGG: &[u8] = include_bytes!("fixtures/sine440_22k_stereo.ogg");
const MP3: &[u8] = include_bytes!("fixtures/sine440_16k_mono.mp3");

fn ideal(rate: u32, n: usize, amp: f64) -> Vec<f64> {
    (0..n)
        .map(|i| amp * (2.0 * PI * 440.0 * i as f64 / f64::from(rate)).sin())
        .collect()
}

/// Normalised correlation of `x` with `y` over `range`.
fn correlation(x: &[f32], y: &[f64], range: std::ops::Range<usize>) -> f64 {
    let dot: f64 = range.clone().map(|i| f64::from(x[i]) * y[i]).sum();
    let nx: f64 = range.clone().map(|i| f64::from(x[i]).powi(2)).sum();
    let ny: f64 = range.map(|i| y[i].powi(2)).sum();
    dot / (nx.sqrt() * ny.sqrt())
}

#[test]
fn flac_probe_and_lossless_decode() {
    let info = probe(FLAC).expect("probe");
    assert_eq!(info.format, "flac");
    assert_eq!((info.sample_rate, info.channels), (16_000, 1));
    assert_eq!(info.frames, Some(4000));
    assert_eq!(info.duration_seconds, Some(0.25));

    let pcm = decode(FLAC).expect("decode");
    assert_eq!(
        (pcm.sample_rate, pcm.channels, pcm.frames),
        (16_000, 1, 4000)
    );
    let want = ideal(16_000, 4000, 0.5);
    for (i, (&got, &want)) in pcm.samples.iter().zip(&want).enumerate() {
        assert!(
            (f64::from(got) - want).abs() < 1e-3,
            "sample {i}: {got} vs {want}"
        );
    }
}

#[test]
fn ogg_vorbis_probe_decode_and_channel_order() {
    let info = probe(OGG).expect("probe");
    assert_eq!(info.format, "ogg");
    assert_eq!((info.sample_rate, info.channels), (22_050, 2));
    assert_eq!(info.frames, Some(11_025));
    assert_eq!(info.duration_seconds, Some(0.5));

    let pcm = decode(OGG).expect("decode");
    assert_eq!(
        (pcm.sample_rate, pcm.channels, pcm.frames),
        (22_050, 2, 11_025)
    );
    let want = ideal(22_050, 11_025, 0.5);
    let left = pcm.channel(0).expect("left");
    let right = pcm.channel(1).expect("right");
    // Lossy, but gapless-trimmed: the waveform lines up with the ideal sine sample for sample.
    assert!(correlation(left, &want, 1000..10_000) > 0.999);
    let negated: Vec<f64> = want.iter().map(|v| -v).collect();
    assert!(correlation(right, &negated, 1000..10_000) > 0.999);
}

#[test]
fn mp3_probe_and_decode() {
    let info = probe(MP3).expect("probe");
    assert_eq!(info.format, "mp3");
    assert_eq!((info.sample_rate, info.channels), (16_000, 1));
    // The LAME/Xing header states the length, net of encoder delay and padding.
    assert_eq!(info.frames, Some(16_000));

    let pcm = decode(MP3).expect("decode");
    assert_eq!(
        (pcm.sample_rate, pcm.channels, pcm.frames),
        (16_000, 1, 16_000)
    );
    let want = ideal(16_000, 16_000, 0.5);
    assert!(correlation(&pcm.samples, &want, 1000..15_000) > 0.99);
}

#[test]
fn compressed_formats_resample_to_16k_mono() {
    let out = to_tensor(OGG, Some(16_000), true).expect("ogg tensor");
    assert_eq!(
        (out.channels, out.frames, out.sample_rate),
        (1, 8000, 16_000)
    );
    // L = sine, R = -sine: the mean is (near) silence.
    assert!(out.samples.iter().all(|s| s.abs() < 0.02));

    let out = to_tensor(FLAC, Some(44_100), false).expect("flac tensor");
    assert_eq!((out.channels, out.frames), (1, 11_025));
    let want = ideal(44_100, 11_025, 0.5);
    assert!(correlation(&out.samples, &want, 1000..10_000) > 0.9999);
}

#[test]
fn every_prefix_of_each_fixture_is_ok_or_err() {
    for (name, bytes) in [("flac", FLAC), ("ogg", OGG), ("mp3", MP3)] {
        for len in 0..bytes.len() {
            // Only Ok/Err is acceptable; a panic fails the test.
            let probed = probe(&bytes[..len]);
            let decoded = decode(&bytes[..len]);
            if let Err(e) = &decoded {
                assert!(!e.message.is_empty(), "{name} prefix {len}");
            }
            // Lossless formats state an exact length, so any cut is an error.
            if name != "mp3" {
                assert!(decoded.is_err(), "{name} prefix {len} decoded");
                assert!(
                    probed.is_err() || name == "flac",
                    "{name} prefix {len} probed"
                );
            }
        }
    }
}

#[test]
fn corrupted_bytes_never_panic() {
    // Flip bytes throughout each fixture; results may be Ok (lossy codecs skip bad packets)
    // or Err, but never a panic.
    for bytes in [FLAC, OGG, MP3] {
        let mut state = 0x1234_5678_9ABC_DEF1u64;
        for _ in 0..300 {
            let mut copy = bytes.to_vec();
            for _ in 0..8 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let at = (state % copy.len() as u64) as usize;
                copy[at] ^= (state >> 40) as u8 | 1;
            }
            let _ = probe(&copy);
            let _ = to_tensor(&copy, Some(8_000), true);
        }
    }
}

#[test]
fn id3_tags_around_mp3_are_skipped() {
    // ID3v2 at the front (with a large padding, as album art would be) and ID3v1 at the end.
    let pad = 1_500_000u32;
    let mut bytes = b"ID3\x04\x00\x00".to_vec();
    bytes.extend_from_slice(&[
        ((pad >> 21) & 0x7f) as u8,
        ((pad >> 14) & 0x7f) as u8,
        ((pad >> 7) & 0x7f) as u8,
        (pad & 0x7f) as u8,
    ]);
    bytes.resize(bytes.len() + pad as usize, 0);
    bytes.extend_from_slice(MP3);
    bytes.extend_from_slice(b"TAG");
    bytes.resize(bytes.len() + 125, b' ');
    let info = probe(&bytes).expect("probe");
    assert_eq!((info.format, info.frames), ("mp3", Some(16_000)));
    assert_eq!(decode(&bytes).expect("decode").frames, 16_000);
}
