//! Framing for links: how frames are delimited on a byte stream.
//!
//! * **Length-prefixed** ([`LengthPrefixedReader`], [`encode_length_prefixed`]) for reliable
//!   byte streams such as TCP: a 4-byte little-endian length, then the frame.
//! * **COBS** ([`CobsReader`], [`encode_cobs`]) for serial and radio links that lose or corrupt
//!   bytes: each frame is COBS-encoded and ends with a `0` byte, so a reader resynchronises at
//!   the next `0` after any damage.
//!
//! Both readers own a fixed buffer of `N` bytes (the maximum frame length) and never allocate.
//! A frame longer than `N` is skipped and reported as [`FrameError::TooLong`]; the reader then
//! carries on with the next frame.

use super::{Codec, EncodeError};
use crate::message::Message;
use core::fmt;
use serde::Serialize;

/// Why a framed byte stream yielded no frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum FrameError {
    /// A frame was longer than the reader's buffer; it was skipped.
    TooLong,
    /// A COBS frame was corrupt (or empty); it was skipped.
    Corrupt,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::TooLong => "frame too long",
            Self::Corrupt => "corrupt frame",
        })
    }
}
impl core::error::Error for FrameError {}

/// Bytes of the length prefix.
pub const LENGTH_PREFIX: usize = 4;

/// Encodes `msg` as a length-prefixed frame into `buf`; returns the bytes written.
///
/// # Errors
/// As [`Codec::encode`].
pub fn encode_length_prefixed<P: Serialize, E: Serialize>(
    codec: &Codec,
    msg: &Message<P, E>,
    buf: &mut [u8],
) -> Result<usize, EncodeError> {
    let Some((head, body)) = buf.split_at_mut_checked(LENGTH_PREFIX) else {
        return Err(EncodeError::BufferTooSmall);
    };
    let n = codec.encode(msg, body)?;
    head.copy_from_slice(&(n as u32).to_le_bytes());
    Ok(LENGTH_PREFIX + n)
}

/// Reassembles length-prefixed frames from a byte stream.
#[derive(Debug)]
pub struct LengthPrefixedReader<const N: usize> {
    head: [u8; LENGTH_PREFIX],
    head_len: usize,
    /// Length of the frame being read (once the prefix is complete).
    want: Option<usize>,
    /// Bytes still to discard of a frame that was too long.
    skip: usize,
    buf: heapless::Vec<u8, N>,
}

impl<const N: usize> Default for LengthPrefixedReader<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> LengthPrefixedReader<N> {
    /// An empty reader.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            head: [0; LENGTH_PREFIX],
            head_len: 0,
            want: None,
            skip: 0,
            buf: heapless::Vec::new(),
        }
    }

    /// Consumes bytes from the front of `input` until a frame is complete (returned, borrowed
    /// from the reader until the next call) or `input` is empty (`None`).
    pub fn feed(&mut self, input: &mut &[u8]) -> Option<Result<&[u8], FrameError>> {
        loop {
            // The rest of a frame too long to keep (nothing when `skip` is 0). If some is still
            // to come, `input` is now empty and the prefix read below returns `None`: a
            // skipped frame leaves `want` at `None`.
            let n = self.skip.min(input.len());
            *input = &input[n..];
            self.skip -= n;
            match self.want {
                None => {
                    let (&b, rest) = input.split_first()?;
                    *input = rest;
                    self.head[self.head_len] = b;
                    self.head_len += 1;
                    if self.head_len == LENGTH_PREFIX {
                        self.head_len = 0;
                        let len = u32::from_le_bytes(self.head) as usize;
                        self.buf.clear();
                        if len > N {
                            self.skip = len;
                            return Some(Err(FrameError::TooLong));
                        }
                        self.want = Some(len);
                    }
                }
                Some(len) => {
                    let n = (len - self.buf.len()).min(input.len());
                    // Cannot fail: `len <= N`.
                    let _ = self.buf.extend_from_slice(&input[..n]);
                    *input = &input[n..];
                    if self.buf.len() < len {
                        return None;
                    }
                    self.want = None;
                    return Some(Ok(&self.buf));
                }
            }
        }
    }
}

/// Encodes `msg` as a COBS frame (terminated by a `0` byte) into `buf`, using `scratch` for the
/// unencoded frame; returns the bytes written to `buf`.
///
/// # Errors
/// As [`Codec::encode`], or [`EncodeError::BufferTooSmall`] if the COBS encoding does not fit.
pub fn encode_cobs<P: Serialize, E: Serialize>(
    codec: &Codec,
    msg: &Message<P, E>,
    scratch: &mut [u8],
    buf: &mut [u8],
) -> Result<usize, EncodeError> {
    let n = codec.encode(msg, scratch)?;
    let written = cobs::try_encode(&scratch[..n], buf).map_err(|_| EncodeError::BufferTooSmall)?;
    let end = buf.get_mut(written).ok_or(EncodeError::BufferTooSmall)?;
    *end = 0;
    Ok(written + 1)
}

/// The largest COBS encoding (with its terminating `0`) of a frame of `len` bytes: the
/// `cobs` crate's bound and the terminator (exact below 254 bytes, where every encoding takes
/// `len + 2`).
#[must_use]
pub const fn cobs_max_len(len: usize) -> usize {
    cobs::max_encoding_length(len) + 1
}

/// Reassembles COBS frames from a byte stream, resynchronising at every `0` byte.
#[derive(Debug)]
pub struct CobsReader<const N: usize> {
    state: cobs::DecoderState,
    buf: heapless::Vec<u8, N>,
    /// Discarding until the next `0`: `Some(error to report)`.
    discarding: Option<FrameError>,
}

impl<const N: usize> Default for CobsReader<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> CobsReader<N> {
    /// An empty reader.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            state: cobs::DecoderState::Idle,
            buf: heapless::Vec::new(),
            discarding: None,
        }
    }

    fn restart(&mut self) {
        self.state = cobs::DecoderState::Idle;
        self.buf.clear();
    }

    /// Consumes bytes from the front of `input` until a frame ends (returned, borrowed from the
    /// reader until the next call) or `input` is empty (`None`).
    pub fn feed(&mut self, input: &mut &[u8]) -> Option<Result<&[u8], FrameError>> {
        if matches!(self.state, cobs::DecoderState::Idle) && self.discarding.is_none() {
            // The previous call may have returned a frame from `buf`.
            self.buf.clear();
        }
        while let Some((&b, rest)) = input.split_first() {
            *input = rest;
            if let Some(err) = self.discarding {
                if b == 0 {
                    self.discarding = None;
                    self.restart();
                    return Some(Err(err));
                }
                continue;
            }
            if b == 0 && matches!(self.state, cobs::DecoderState::Idle) {
                // An empty frame (or a leading delimiter): nothing to report.
                continue;
            }
            match self.state.feed(b) {
                Ok(cobs::DecodeResult::NoData) => {}
                Ok(cobs::DecodeResult::DataContinue(d)) => {
                    if self.buf.push(d).is_err() {
                        self.discarding = Some(FrameError::TooLong);
                    }
                }
                Ok(cobs::DecodeResult::DataComplete) => {
                    self.state = cobs::DecoderState::Idle;
                    return Some(Ok(&self.buf));
                }
                Err(_) => {
                    // The `cobs` decoder fails only at a `0` (a frame cut short); should one
                    // fail inside a frame, the rest of it is discarded up to its delimiter.
                    self.restart();
                    if b == 0 {
                        return Some(Err(FrameError::Corrupt));
                    }
                    self.discarding = Some(FrameError::Corrupt);
                }
            }
        }
        None
    }
}
