//! A small client protocol for a host: propose to a group, list leaders, read the status,
//! create and remove groups. Length-prefixed (4 bytes, little endian) postcard frames over TCP, one
//! request at a time per connection. The benchmark (`raftlet-multi bench`) drives hosts in
//! other processes through it.

use super::host::{HostError, HostHandle, HostStatus};
use super::wal::GroupId;
use crate::net::{read_frame, write_frame};
use raftlet::NodeId;
use serde::{Deserialize, Serialize};
use std::io;
use std::net::SocketAddr;
use tokio::io::{AsyncRead, AsyncWrite, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// The largest request or response (a leader list of 100,000 groups fits).
const MAX_MESSAGE: usize = 16 << 20;

/// A request to a host.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub enum Request {
    /// Propose `command` to `group`.
    Propose {
        /// The group.
        group: GroupId,
        /// The command.
        command: Vec<u8>,
    },
    /// Every group's leader as the host knows it.
    Leaders,
    /// The host's status.
    Status,
    /// Create groups `from..to` with `voters`.
    CreateGroups {
        /// First group id.
        from: GroupId,
        /// One past the last.
        to: GroupId,
        /// Voters (process ids).
        voters: Vec<u64>,
    },
    /// Remove this host's replicas of groups `from..to`.
    RemoveGroups {
        /// First group id.
        from: GroupId,
        /// One past the last.
        to: GroupId,
    },
}

/// A host's answer.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub enum Response {
    /// The proposal was applied; the state machine's answer.
    Applied(Vec<u8>),
    /// Not the leader of the group (the leader it knows).
    NotLeader(Option<u64>),
    /// Another failure.
    Failed(String),
    /// `(group, leader, term)` of every group.
    Leaders(Vec<(GroupId, Option<u64>, u64)>),
    /// The status.
    Status(HostStatus),
    /// Groups created.
    Created,
    /// Groups removed.
    Removed,
}

/// Reads one message (the transport's length-prefixed frames, `net::read_frame`); `None` at a
/// clean end of stream.
///
/// # Errors
/// I/O errors, a frame too long, or one that does not decode.
pub async fn read_msg<T: for<'de> Deserialize<'de>>(
    r: &mut (impl AsyncRead + Unpin),
) -> io::Result<Option<T>> {
    let mut buf = Vec::new();
    if !read_frame(r, MAX_MESSAGE, &mut buf, None).await? {
        return Ok(None);
    }
    postcard::from_bytes(&buf)
        .map(Some)
        .map_err(io::Error::other)
}

/// Writes one message as one frame.
///
/// # Errors
/// I/O errors, or a message that does not encode.
pub async fn write_msg<T: Serialize>(w: &mut (impl AsyncWrite + Unpin), m: &T) -> io::Result<()> {
    let body = postcard::to_allocvec(m).map_err(io::Error::other)?;
    write_frame(w, &body).await
}

/// Serves the protocol for `host` on `listener` until the host stops.
pub async fn serve(listener: TcpListener, host: HostHandle) {
    while let Ok((stream, _)) = listener.accept().await {
        let _ = stream.set_nodelay(true);
        let host = host.clone();
        tokio::spawn(async move {
            let (r, mut w) = stream.into_split();
            let mut r = BufReader::new(r);
            while let Ok(Some(req)) = read_msg::<Request>(&mut r).await {
                let resp = answer(&host, req).await;
                if write_msg(&mut w, &resp).await.is_err() {
                    return;
                }
            }
        });
    }
}

async fn answer(host: &HostHandle, req: Request) -> Response {
    match req {
        Request::Propose { group, command } => match host.propose(group, command).await {
            Ok(a) => Response::Applied(a),
            Err(HostError::NotLeader(l)) => Response::NotLeader(l.map(|n| n.0)),
            Err(e) => Response::Failed(e.to_string()),
        },
        Request::Leaders => match host.leaders().await {
            Ok(v) => Response::Leaders(
                v.into_iter()
                    .map(|(g, l, t)| (g, l.map(|n| n.0), t.0))
                    .collect(),
            ),
            Err(e) => Response::Failed(e.to_string()),
        },
        Request::Status => match host.status().await {
            Ok(s) => Response::Status(s),
            Err(e) => Response::Failed(e.to_string()),
        },
        Request::CreateGroups { from, to, voters } => {
            let voters: Vec<NodeId> = voters.into_iter().map(NodeId).collect();
            for g in from..to {
                if let Err(e) = host.create_group(g, &voters).await
                    && e != HostError::Exists
                {
                    return Response::Failed(e.to_string());
                }
            }
            Response::Created
        }
        Request::RemoveGroups { from, to } => {
            for g in from..to {
                if let Err(e) = host.remove_group(g).await
                    && e != HostError::NoGroup
                {
                    return Response::Failed(e.to_string());
                }
            }
            Response::Removed
        }
    }
}

/// A connection to a host's client protocol.
pub struct ControlClient {
    stream: BufReader<TcpStream>,
}

impl ControlClient {
    /// Connects to `addr`.
    ///
    /// # Errors
    /// I/O errors.
    pub async fn connect(addr: SocketAddr) -> io::Result<Self> {
        let s = TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        Ok(Self {
            stream: BufReader::new(s),
        })
    }

    /// Sends `req` and waits for the answer.
    ///
    /// # Errors
    /// I/O errors.
    pub async fn call(&mut self, req: &Request) -> io::Result<Response> {
        write_msg(self.stream.get_mut(), req).await?;
        read_msg(&mut self.stream)
            .await?
            .ok_or_else(|| io::ErrorKind::UnexpectedEof.into())
    }
}
