//! The wire format: every [`Message`] as bytes, with a version and a cluster id.
//!
//! # Layout
//! A frame is the postcard encoding of `(version: u8, cluster: u64, message: Message<P, B>)`:
//! one version byte ([`WIRE_VERSION`]), the cluster id as a varint, then the message (`from`,
//! `to`, `term` as varints, then the body's variant index and fields). Enums only ever gain
//! variants at the end, so existing encodings never change; `tests/testdata/golden.txt` pins the
//! exact bytes of one message of each kind.
//!
//! # Untrusted input
//! [`Codec::decode`] checks, in order: the frame length against the codec's maximum, the
//! version, the cluster id, the message kind, then the full decode (which rejects impossible
//! values such as an entry count beyond the batch capacity), and finally trailing bytes. Each
//! failure is a typed [`DecodeError`]. Decoding never panics and, for payload types that do not
//! allocate (integers, `heapless::Vec`, arrays), never allocates. It is a pure function: a bad
//! frame never reaches the node.
//!
//! Framing for links comes from [`frame`]: length-prefixed for byte streams (TCP), COBS for
//! serial and radio links. A process that hosts many Raft groups sends messages of any number
//! of them in one frame ([`group`], wire version 2), each named by its group id.

pub mod frame;
pub mod group;

use crate::action::Outgoing;
use crate::message::Message;
use crate::storage::Storage;
use core::fmt;
use serde::{Deserialize, Serialize};

/// The wire format version this build speaks. Frames of any other version are refused.
pub const WIRE_VERSION: u8 = 1;

/// How many message kinds (`Body` variants) this version knows: a frame whose kind is this or
/// more is refused with [`DecodeError::UnknownKind`]. `tests/wire.rs` checks that it equals the
/// number of `Body` variants.
pub const MESSAGE_KINDS: u64 = 16;

/// Encodes and decodes frames of one cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Codec {
    cluster: u64,
    max_frame: usize,
}

/// Why a message could not be encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum EncodeError {
    /// The output buffer is too small.
    BufferTooSmall,
    /// The encoded frame would exceed the codec's maximum frame length.
    TooLong,
    /// The payload's `Serialize` implementation failed.
    Payload,
}

/// Why a frame was refused. The node never sees a refused frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum DecodeError {
    /// The frame ends before the message does.
    Truncated,
    /// The frame is longer than the codec's maximum.
    TooLong {
        /// The frame's length.
        len: usize,
        /// The maximum.
        max: usize,
    },
    /// The frame was written by another wire version.
    VersionMismatch {
        /// The version in the frame.
        got: u8,
    },
    /// The frame belongs to another cluster.
    ClusterMismatch {
        /// The cluster id in the frame.
        got: u64,
    },
    /// The message kind is not one this version knows.
    UnknownKind {
        /// The kind in the frame.
        kind: u64,
    },
    /// A value that cannot be valid: a malformed varint or bool, an unknown variant inside the
    /// message, more entries than the batch capacity, a payload the payload type refuses.
    Invalid,
    /// The message was complete before the frame ended.
    TrailingBytes {
        /// How many bytes were left over.
        extra: usize,
    },
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::BufferTooSmall => "output buffer too small",
            Self::TooLong => "frame exceeds the maximum length",
            Self::Payload => "payload failed to serialize",
        })
    }
}
impl core::error::Error for EncodeError {}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated => f.write_str("frame truncated"),
            Self::TooLong { len, max } => {
                write!(f, "frame of {len} bytes exceeds the maximum of {max}")
            }
            Self::VersionMismatch { got } => {
                write!(f, "wire version {got}, expected {WIRE_VERSION}")
            }
            Self::ClusterMismatch { got } => write!(f, "frame for cluster {got}"),
            Self::UnknownKind { kind } => write!(f, "unknown message kind {kind}"),
            Self::Invalid => f.write_str("invalid value in frame"),
            Self::TrailingBytes { extra } => write!(f, "{extra} trailing bytes after the message"),
        }
    }
}
impl core::error::Error for DecodeError {}

fn map_de(e: postcard::Error) -> DecodeError {
    match e {
        postcard::Error::DeserializeUnexpectedEnd => DecodeError::Truncated,
        _ => DecodeError::Invalid,
    }
}

impl Codec {
    /// A codec for `cluster` whose frames may be at most `max_frame` bytes. Use
    /// [`max_frame_len`] (or [`max_frame_len_for`]) to size it for a node profile.
    #[must_use]
    pub const fn new(cluster: u64, max_frame: usize) -> Self {
        Self { cluster, max_frame }
    }

    /// The cluster id written into and expected in every frame.
    #[must_use]
    pub const fn cluster(&self) -> u64 {
        self.cluster
    }

    /// The largest frame this codec writes or accepts.
    #[must_use]
    pub const fn max_frame(&self) -> usize {
        self.max_frame
    }

    /// Encodes `msg` into `buf`; returns the frame's length.
    ///
    /// # Errors
    /// [`EncodeError`] when `buf` or the maximum frame length is too small.
    pub fn encode<P: Serialize, E: Serialize>(
        &self,
        msg: &Message<P, E>,
        buf: &mut [u8],
    ) -> Result<usize, EncodeError> {
        let len = buf.len().min(self.max_frame);
        let room_is_max = buf.len() >= self.max_frame;
        match postcard::to_slice(&(WIRE_VERSION, self.cluster, msg), &mut buf[..len]) {
            Ok(out) => Ok(out.len()),
            Err(postcard::Error::SerializeBufferFull) if room_is_max => Err(EncodeError::TooLong),
            Err(postcard::Error::SerializeBufferFull) => Err(EncodeError::BufferTooSmall),
            Err(_) => Err(EncodeError::Payload),
        }
    }

    /// Decodes one frame.
    ///
    /// # Errors
    /// A [`DecodeError`] saying why the frame was refused.
    pub fn decode<'de, P: Deserialize<'de>, E: Deserialize<'de>>(
        &self,
        frame: &'de [u8],
    ) -> Result<Message<P, E>, DecodeError> {
        let body = self.check_header(frame, WIRE_VERSION)?;
        let (msg, extra) = Self::decode_message(body)?;
        if !extra.is_empty() {
            return Err(DecodeError::TrailingBytes { extra: extra.len() });
        }
        Ok(msg)
    }

    /// Checks a frame's length, version (`version`) and cluster; returns what follows them.
    pub(crate) fn check_header<'de>(
        &self,
        frame: &'de [u8],
        version: u8,
    ) -> Result<&'de [u8], DecodeError> {
        if frame.len() > self.max_frame {
            return Err(DecodeError::TooLong {
                len: frame.len(),
                max: self.max_frame,
            });
        }
        let (&got, rest) = frame.split_first().ok_or(DecodeError::Truncated)?;
        if got != version {
            return Err(DecodeError::VersionMismatch { got });
        }
        let (cluster, body) = postcard::take_from_bytes::<u64>(rest).map_err(map_de)?;
        if cluster != self.cluster {
            return Err(DecodeError::ClusterMismatch { got: cluster });
        }
        Ok(body)
    }

    /// Decodes one message from the front of `body`, its kind checked first; returns it and
    /// the bytes after it.
    pub(crate) fn decode_message<'de, P: Deserialize<'de>, E: Deserialize<'de>>(
        body: &'de [u8],
    ) -> Result<(Message<P, E>, &'de [u8]), DecodeError> {
        // from, to, term, then the body's variant index.
        let (_, peek) = postcard::take_from_bytes::<(u64, u64, u64)>(body).map_err(map_de)?;
        let (kind, _) = postcard::take_from_bytes::<u32>(peek).map_err(map_de)?;
        if u64::from(kind) >= MESSAGE_KINDS {
            return Err(DecodeError::UnknownKind {
                kind: u64::from(kind),
            });
        }
        postcard::take_from_bytes::<Message<P, E>>(body).map_err(map_de)
    }
}

impl Codec {
    /// Encodes a send polled from a node ([`Action::Send`](crate::Action::Send)) straight into
    /// `buf`: its entries are read from `storage` and the node's log as they are written, with
    /// no owned copy of the message. The bytes are those of the same message in any container.
    ///
    /// # Errors
    /// As [`encode`](Self::encode); [`EncodeError::Payload`] also when `storage` lacks an entry
    /// the append carries.
    pub fn encode_outgoing<P, S>(
        &self,
        out: &Outgoing<'_, P>,
        storage: &S,
        buf: &mut [u8],
    ) -> Result<usize, EncodeError>
    where
        P: Serialize + Clone,
        S: Storage<P>,
    {
        self.encode(&outgoing_message(out, storage)?, buf)
    }
}

/// A polled send as a message that serializes its entries from `storage` and the node's log as
/// it is written.
pub(crate) fn outgoing_message<'o, 'a, 's, P, S>(
    out: &'o Outgoing<'a, P>,
    storage: &'s S,
) -> Result<Message<&'o P, OutgoingEntriesSer<'o, 'a, 's, P, S>>, EncodeError>
where
    P: Clone,
    S: Storage<P>,
{
    out.message().try_map(
        |()| out.chunk().ok_or(EncodeError::Payload),
        |_| Ok(OutgoingEntriesSer { out, storage }),
    )
}

/// Serializes an outgoing append's entries as a sequence, reading them as it goes.
pub(crate) struct OutgoingEntriesSer<'o, 'a, 's, P, S> {
    out: &'o Outgoing<'a, P>,
    storage: &'s S,
}

impl<P: Serialize + Clone, S: Storage<P>> Serialize for OutgoingEntriesSer<'_, '_, '_, P, S> {
    fn serialize<Z: serde::Serializer>(&self, ser: Z) -> Result<Z::Ok, Z::Error> {
        use serde::ser::{Error, SerializeSeq};
        let entries = self.out.entries(self.storage);
        let mut seq = ser.serialize_seq(Some(entries.size_hint().0))?;
        for e in entries {
            let e = e.map_err(|_| Z::Error::custom("missing entry"))?;
            seq.serialize_element(&e)?;
        }
        seq.end()
    }
}

/// The largest encoding of a payload type, for sizing frames at compile time.
pub trait MaxEncodedLen {
    /// An upper bound of the postcard encoding's length, in bytes.
    const MAX_ENCODED_LEN: usize;
}

macro_rules! max_len {
    ($($t:ty => $n:expr),*) => { $(impl MaxEncodedLen for $t { const MAX_ENCODED_LEN: usize = $n; })* };
}
max_len!(() => 0, bool => 1, u8 => 1, u16 => 3, u32 => 5, u64 => 10, u128 => 19, i8 => 1, i16 => 3, i32 => 5, i64 => 10);

impl<const N: usize> MaxEncodedLen for heapless::Vec<u8, N> {
    const MAX_ENCODED_LEN: usize = varint_len(N) + N;
}
impl<const N: usize> MaxEncodedLen for [u8; N] {
    const MAX_ENCODED_LEN: usize = N;
}

/// Bytes of a varint encoding `n`.
#[must_use]
pub const fn varint_len(n: usize) -> usize {
    let mut len = 1;
    let mut v = n >> 7;
    while v > 0 {
        len += 1;
        v >>= 7;
    }
    len
}

const U64: usize = 10;
const VARIANT: usize = 5;

/// An upper bound of any frame's length for messages of up to `batch` entries whose payloads
/// encode to at most `max_payload` bytes (for payload types without [`MaxEncodedLen`], such as
/// `Vec<u8>` with an application limit).
#[must_use]
pub const fn max_frame_len_for(batch: usize, max_payload: usize) -> usize {
    let header = 1 + U64 + 3 * U64 + VARIANT;
    // An entry carries a payload or a membership change (a count, up to MAX_CONF_CHANGES
    // changes of a variant and a node id, and a flag).
    let conf_change = 1 + crate::membership::MAX_CONF_CHANGES * (VARIANT + U64) + 1;
    let data = if max_payload > conf_change {
        max_payload
    } else {
        conf_change
    };
    let entry = 2 * U64 + VARIANT + data;
    let append = 3 * U64 + varint_len(batch) + batch * entry;
    // tag, request variant, snapshot id, seq, payload, optional checksum
    let chunk = U64 + VARIANT + 2 * U64 + VARIANT + max_payload + 1 + U64;
    // Every other body is shorter than an empty append or a chunk of no bytes (at most a tag,
    // a variant and three integers, 35 bytes, against 31 + 51): these two bound them all, as
    // `tests/wire.rs` checks for the widest message of every kind.
    if chunk > append {
        header + chunk
    } else {
        header + append
    }
}

/// An upper bound of any frame's length for `Message<P, BATCH>`, at compile time.
#[must_use]
pub const fn max_frame_len<P: MaxEncodedLen, const BATCH: usize>() -> usize {
    max_frame_len_for(BATCH, P::MAX_ENCODED_LEN)
}
