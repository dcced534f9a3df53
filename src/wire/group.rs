//! Frames of many Raft groups: one process talks to another over one link, and each frame
//! carries messages of any number of groups, each named by its group id.
//!
//! # Layout (wire version [`GROUP_WIRE_VERSION`])
//! A group frame is the version byte, the cluster id as a varint, then one or more items until
//! the frame ends, each the postcard encoding of `(group: u64, message: Message<P, B>)`: the
//! group id as a varint, then the message exactly as in a single-group frame (`from`, `to`,
//! `term`, the body's variant index and fields). There is no item count: a writer appends
//! items until the next one does not fit, and a reader takes items until the frame ends.
//! `tests/testdata/golden-groups.txt` pins the bytes.
//!
//! Heartbeats of many groups between the same pair of processes go out in one frame this way
//! (the coalescing of CockroachDB's heartbeats, with each group's own term and commit index),
//! and a quiescent group sends none at all (`Config::quiesce`).
//!
//! # Untrusted input
//! [`GroupFrameReader::new`] checks the frame's length, version and cluster; each item is then
//! decoded as [`Codec::decode`] decodes a message (its kind first, impossible values refused).
//! The first bad item ends the frame: the reader yields its error and nothing after it, since
//! the items' boundaries are lost. Items before it were well formed and may be stepped.

use super::{Codec, DecodeError, EncodeError, map_de};
use crate::action::Outgoing;
use crate::message::Message;
use crate::storage::Storage;
use serde::{Deserialize, Serialize};

/// The wire version of group frames. A single-group frame ([`super::WIRE_VERSION`]) and a group
/// frame are told apart by this first byte.
pub const GROUP_WIRE_VERSION: u8 = 2;

/// Appends messages of many groups to one frame in a caller's buffer.
#[derive(Debug)]
pub struct GroupFrameWriter<'b> {
    buf: &'b mut [u8],
    len: usize,
    items: usize,
}

impl<'b> GroupFrameWriter<'b> {
    /// Starts a frame of `codec`'s cluster in `buf`, at most `codec.max_frame()` bytes long.
    ///
    /// # Errors
    /// [`EncodeError::BufferTooSmall`] when not even the frame's header fits.
    pub fn new(codec: &Codec, buf: &'b mut [u8]) -> Result<Self, EncodeError> {
        let limit = buf.len().min(codec.max_frame());
        let buf = &mut buf[..limit];
        let len = encode_header(codec, buf)?;
        Ok(Self { buf, len, items: 0 })
    }

    /// Appends `msg` of group `group`. When it does not fit, the frame is left as it was, so
    /// the caller sends the frame and starts the next one with this message.
    ///
    /// # Errors
    /// [`EncodeError::TooLong`] when the message does not fit in what is left of the frame,
    /// [`EncodeError::Payload`] when its payload fails to serialize.
    pub fn push<P: Serialize, E: Serialize>(
        &mut self,
        group: u64,
        msg: &Message<P, E>,
    ) -> Result<(), EncodeError> {
        self.len += encode_item(group, msg, &mut self.buf[self.len..])?;
        self.items += 1;
        Ok(())
    }

    /// Appends a send polled from group `group`'s node, its entries read from `storage` and the
    /// node's log as they are written (as [`Codec::encode_outgoing`]).
    ///
    /// # Errors
    /// As [`push`](Self::push); [`EncodeError::Payload`] also when `storage` lacks an entry
    /// the append carries.
    pub fn push_outgoing<P, S>(
        &mut self,
        group: u64,
        out: &Outgoing<'_, P>,
        storage: &S,
    ) -> Result<(), EncodeError>
    where
        P: Serialize + Clone,
        S: Storage<P>,
    {
        self.len += encode_outgoing_item(group, out, storage, &mut self.buf[self.len..])?;
        self.items += 1;
        Ok(())
    }

    /// How many messages the frame holds.
    #[must_use]
    pub fn items(&self) -> usize {
        self.items
    }

    /// The frame's length so far.
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the frame holds no message yet.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.items == 0
    }

    /// The frame's bytes (the header alone while it holds no message).
    #[must_use]
    pub fn frame(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// Writes a group frame's header (version and cluster) to `buf`; returns its length. With
/// [`encode_item`], for a runner that keeps its frame buffers across calls rather than a
/// [`GroupFrameWriter`].
///
/// # Errors
/// [`EncodeError::BufferTooSmall`] when it does not fit.
pub fn encode_header(codec: &Codec, buf: &mut [u8]) -> Result<usize, EncodeError> {
    postcard::to_slice(&(GROUP_WIRE_VERSION, codec.cluster()), buf)
        .map(|out| out.len())
        .map_err(|_| EncodeError::BufferTooSmall)
}

/// Writes one item (`group`, then `msg`) to `buf`, the free space of a frame after its header
/// and earlier items; returns its length.
///
/// # Errors
/// [`EncodeError::TooLong`] when it does not fit, [`EncodeError::Payload`] when the payload
/// fails to serialize.
pub fn encode_item<P: Serialize, E: Serialize>(
    group: u64,
    msg: &Message<P, E>,
    buf: &mut [u8],
) -> Result<usize, EncodeError> {
    match postcard::to_slice(&(group, msg), buf) {
        Ok(out) => Ok(out.len()),
        Err(postcard::Error::SerializeBufferFull) => Err(EncodeError::TooLong),
        Err(_) => Err(EncodeError::Payload),
    }
}

/// [`encode_item`] for a send polled from group `group`'s node, its entries read from `storage`
/// and the node's log as they are written.
///
/// # Errors
/// As [`encode_item`]; [`EncodeError::Payload`] also when `storage` lacks an entry.
pub fn encode_outgoing_item<P, S>(
    group: u64,
    out: &Outgoing<'_, P>,
    storage: &S,
    buf: &mut [u8],
) -> Result<usize, EncodeError>
where
    P: Serialize + Clone,
    S: Storage<P>,
{
    encode_item(group, &super::outgoing_message(out, storage)?, buf)
}

/// A message of a group frame and its group id.
pub type GroupMessage<P, E> = (u64, Message<P, E>);

/// Yields the messages of a group frame, each with its group id, in the order they were
/// written. Decoding never panics and, for payload types that do not allocate, never allocates.
#[derive(Debug)]
pub struct GroupFrameReader<'de> {
    rest: &'de [u8],
    failed: bool,
}

impl<'de> GroupFrameReader<'de> {
    /// Checks `frame`'s length, version and cluster against `codec`.
    ///
    /// # Errors
    /// [`DecodeError::TooLong`], [`DecodeError::Truncated`] (no header or no message),
    /// [`DecodeError::VersionMismatch`] (a single-group frame among them) or
    /// [`DecodeError::ClusterMismatch`].
    pub fn new(codec: &Codec, frame: &'de [u8]) -> Result<Self, DecodeError> {
        let rest = codec.check_header(frame, GROUP_WIRE_VERSION)?;
        if rest.is_empty() {
            return Err(DecodeError::Truncated);
        }
        Ok(Self {
            rest,
            failed: false,
        })
    }

    /// The next message and its group, `None` at the end of the frame. After an error the
    /// reader yields nothing more.
    ///
    /// # Errors
    /// As [`Codec::decode`] for one message.
    #[allow(clippy::should_implement_trait)] // generic over the message's types, per call
    pub fn next<P: Deserialize<'de>, E: Deserialize<'de>>(
        &mut self,
    ) -> Option<Result<GroupMessage<P, E>, DecodeError>> {
        if self.failed || self.rest.is_empty() {
            return None;
        }
        let item = postcard::take_from_bytes::<u64>(self.rest)
            .map_err(map_de)
            .and_then(|(group, body)| {
                let (msg, rest) = Codec::decode_message::<P, E>(body)?;
                Ok((group, msg, rest))
            });
        match item {
            Ok((group, msg, rest)) => {
                self.rest = rest;
                Some(Ok((group, msg)))
            }
            Err(e) => {
                self.failed = true;
                self.rest = &[];
                Some(Err(e))
            }
        }
    }
}
