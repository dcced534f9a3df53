//! How frames reach other nodes: the [`Link`] trait, and [`CobsLink`], which turns a
//! byte-oriented link (a UART, an RS-485 bus, a radio) into a frame link.
//!
//! A frame is one message as the core's [`Codec`](raftlet::wire::Codec) encodes it. Links may
//! lose frames (Raft tolerates it); they must not hand the runner a damaged one, which is why
//! [`CobsLink`] appends a CRC-32 to every frame before COBS-encoding it: serial lines and radios
//! flip bits, and a flipped bit inside a payload would otherwise decode as a valid message.

use core::convert::Infallible;
use embedded_io_async::{Error as _, Read, Write};
use raftlet::NodeId;
use raftlet::wire::frame::CobsReader;

/// Frames to and from the other nodes.
#[allow(async_fn_in_trait)]
pub trait Link {
    /// Why a send or a receive failed (the runner counts it and goes on).
    type Error;
    /// Sends one frame to `to` (a link on a shared bus ignores `to`: every node sees every
    /// frame, and the runner drops those not addressed to it). Delivery is not guaranteed.
    async fn send(&mut self, to: NodeId, frame: &[u8]) -> Result<(), Self::Error>;
    /// Receives the next whole frame into `buf` and returns its length.
    ///
    /// **Cancel safety**: the runner drops this future whenever a timer or a proposal comes
    /// first. Dropping it must lose no byte of a frame: keep partial frames in `self`, not in
    /// the future.
    async fn recv(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error>;
}

/// Why [`CobsLink`] could not deliver or receive a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum CobsLinkError {
    /// The byte link failed.
    Io(embedded_io_async::ErrorKind),
    /// A frame is longer than the link's buffers.
    TooLong,
    /// A received frame was damaged (bad COBS or a CRC mismatch); it was dropped.
    Corrupt,
}

const CRC: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);

/// A frame link over a byte link: every frame is followed by its CRC-32, COBS-encoded, and
/// terminated by a `0` byte, so a receiver resynchronises at the next `0` after any damage.
///
/// `N` is the largest frame plus 4 (the CRC); `E` the size of the encoding buffer, at least
/// [`encoded_len(N)`](encoded_len) (checked at compile time). Receiving is cancel-safe when
/// the byte link's `read` is (it keeps partial frames in its own buffer).
pub struct CobsLink<R, W, const N: usize, const E: usize> {
    rx: R,
    tx: W,
    reader: CobsReader<N>,
    raw: [u8; N],
    encoded: [u8; E],
    pending: [u8; 64],
    pending_len: usize,
    pending_at: usize,
}

/// The encoding buffer [`CobsLink`] needs for frames of up to `n` bytes (CRC included).
#[must_use]
pub const fn encoded_len(n: usize) -> usize {
    cobs::max_encoding_length(n) + 1
}

impl<R: Read, W: Write, const N: usize, const E: usize> CobsLink<R, W, N, E> {
    /// A link that reads bytes from `rx` and writes bytes to `tx`.
    pub fn new(rx: R, tx: W) -> Self {
        const { assert!(E >= encoded_len(N), "E must be at least encoded_len(N)") };
        Self {
            rx,
            tx,
            reader: CobsReader::new(),
            raw: [0; N],
            encoded: [0; E],
            pending: [0; 64],
            pending_len: 0,
            pending_at: 0,
        }
    }

    /// The byte link halves.
    pub fn into_inner(self) -> (R, W) {
        (self.rx, self.tx)
    }
}

impl<R: Read, W: Write, const N: usize, const E: usize> Link for CobsLink<R, W, N, E> {
    type Error = CobsLinkError;

    async fn send(&mut self, _to: NodeId, frame: &[u8]) -> Result<(), Self::Error> {
        let len = frame.len() + 4;
        if len > N {
            return Err(CobsLinkError::TooLong);
        }
        self.raw[..frame.len()].copy_from_slice(frame);
        self.raw[frame.len()..len].copy_from_slice(&CRC.checksum(frame).to_le_bytes());
        let n = cobs::encode(&self.raw[..len], &mut self.encoded[..E - 1]);
        self.encoded[n] = 0;
        self.tx
            .write_all(&self.encoded[..=n])
            .await
            .map_err(|e| CobsLinkError::Io(e.kind()))?;
        self.tx
            .flush()
            .await
            .map_err(|e| CobsLinkError::Io(e.kind()))
    }

    async fn recv(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        loop {
            // Bytes read earlier but not yet fed (a frame ended in the middle of them).
            while self.pending_at < self.pending_len {
                let mut input = &self.pending[self.pending_at..self.pending_len];
                let before = input.len();
                let frame = self.reader.feed(&mut input);
                self.pending_at += before - input.len();
                match frame {
                    None => {}
                    Some(Err(_)) => return Err(CobsLinkError::Corrupt),
                    Some(Ok(f)) => {
                        let Some(body) = f.len().checked_sub(4) else {
                            return Err(CobsLinkError::Corrupt);
                        };
                        let crc =
                            u32::from_le_bytes([f[body], f[body + 1], f[body + 2], f[body + 3]]);
                        if CRC.checksum(&f[..body]) != crc {
                            return Err(CobsLinkError::Corrupt);
                        }
                        if body > buf.len() {
                            return Err(CobsLinkError::TooLong);
                        }
                        buf[..body].copy_from_slice(&f[..body]);
                        return Ok(body);
                    }
                }
            }
            // Cancel safety: a read that completes is consumed right here, before any other
            // await; a read that is dropped took no byte.
            let n = self
                .rx
                .read(&mut self.pending)
                .await
                .map_err(|e| CobsLinkError::Io(e.kind()))?;
            self.pending_len = n;
            self.pending_at = 0;
        }
    }
}

/// A link that never delivers anything (a single-node cluster, or a placeholder).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoLink;

impl Link for NoLink {
    type Error = Infallible;
    async fn send(&mut self, _to: NodeId, _frame: &[u8]) -> Result<(), Infallible> {
        Ok(())
    }
    async fn recv(&mut self, _buf: &mut [u8]) -> Result<usize, Infallible> {
        core::future::pending().await
    }
}
