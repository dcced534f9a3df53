//! Mutual TLS: a cluster whose nodes and clients hold certificates of one CA works (writes,
//! forwarding between nodes, reads); everyone else is refused and changes nothing: a plain-TCP
//! peer or client, a certificate of another CA, a client certificate posing as a node, and
//! node 2's certificate claiming to be node 3 (with a message of a much higher term).

use raftlet::{NodeId, Role, Term};
use raftlet_tokio::kv::{self, Client, Reply, Request};
use raftlet_tokio::net::NetOptions;
use raftlet_tokio::runner::{self, Handle, RunnerConfig};
use raftlet_tokio::tls::{self, Tls};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

struct Certs {
    nodes: Vec<Tls>,
    client: Tls,
    /// Node 2's certificate, and the client's, as raw PEM (to build hostile set-ups).
    g: tls::Generated,
}

fn certs() -> Certs {
    let g = tls::generate(&[1, 2, 3]).unwrap();
    let nodes = g
        .nodes
        .iter()
        .map(|(_, c, k)| Tls::from_pem(g.ca_cert.as_bytes(), c.as_bytes(), k.as_bytes()).unwrap())
        .collect();
    let client = Tls::from_pem(
        g.ca_cert.as_bytes(),
        g.client.0.as_bytes(),
        g.client.1.as_bytes(),
    )
    .unwrap();
    Certs { nodes, client, g }
}

async fn start(dir: &std::path::Path, addrs: &[SocketAddr], certs: &Certs) -> Vec<Handle> {
    let voters: Vec<NodeId> = (1..=3).map(NodeId).collect();
    let mut nodes = Vec::new();
    for k in 0..3 {
        let id = NodeId(k as u64 + 1);
        let mut cfg = RunnerConfig::new(id, dir.join(id.to_string()), voters.clone());
        cfg.tick = Duration::from_millis(20);
        cfg.peers = (0..3)
            .filter(|&j| j != k)
            .map(|j| (NodeId(j as u64 + 1), addrs[j]))
            .collect();
        let options = NetOptions {
            tls: Some(certs.nodes[k].clone()),
            ..Default::default()
        };
        let h =
            kv::start_with_options(cfg, addrs[k], raftlet_tokio::memlog::MemLog::new(), options)
                .await
                .unwrap();
        nodes.push(h);
    }
    nodes
}

async fn leader(nodes: &[Handle]) -> (usize, Term) {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(20) {
        for (k, h) in nodes.iter().enumerate() {
            if let Some(s) = h.status().await
                && s.role == Role::Leader
            {
                return (k, s.term);
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no leader");
}

fn put(key: &str) -> Request {
    Request::Put {
        key: key.as_bytes().to_vec(),
        value: b"v".to_vec(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_holders_of_the_clusters_certificates_get_in() {
    let dir = tempfile::tempdir().unwrap();
    let certs = certs();
    let addrs: Vec<SocketAddr> = (0..3).map(|_| free_addr()).collect();
    let nodes = start(dir.path(), &addrs, &certs).await;
    let (l, term) = leader(&nodes).await;
    let f = (l + 1) % 3;

    // A client with the cluster's client certificate writes through a follower (forwarded to
    // the leader over TLS) and reads back.
    let mut c = Client::connect_with(addrs[f], Some(&certs.client))
        .await
        .unwrap();
    for k in 0..10 {
        let r = c.call(put(&format!("t{k}")), Duration::from_secs(5)).await;
        assert!(matches!(r, Ok(Reply::Applied)), "{r:?}");
    }
    let get = Request::Get {
        key: b"t9".to_vec(),
        stale: false,
    };
    let r = c.call(get, Duration::from_secs(5)).await.unwrap();
    assert_eq!(r, Reply::Value(Some(b"v".to_vec())));
    let commit = nodes[l].status().await.unwrap().commit;

    // Plain TCP: no client, no peer.
    assert!(
        kv::call(
            addrs[l],
            &kv::Envelope {
                hops: 0,
                request: put("plain")
            },
            Duration::from_secs(2)
        )
        .await
        .is_err()
    );
    // Certificates of another CA.
    let other = tls::generate(&[1, 2, 3]).unwrap();
    let foreign = Tls::from_pem(
        other.ca_cert.as_bytes(),
        other.client.0.as_bytes(),
        other.client.1.as_bytes(),
    )
    .unwrap();
    assert!(
        Client::connect_with(addrs[l], Some(&foreign))
            .await
            .is_err()
            || kv::call_with(
                addrs[l],
                &kv::Envelope {
                    hops: 0,
                    request: put("foreign")
                },
                Duration::from_secs(2),
                Some(&foreign)
            )
            .await
            .is_err()
    );
    // A foreign CA's node certificate, trusting our CA to get past the client side: the node
    // refuses its certificate during the handshake.
    let mixed = Tls::from_pem(
        certs.g.ca_cert.as_bytes(),
        other.nodes[1].1.as_bytes(),
        other.nodes[1].2.as_bytes(),
    )
    .unwrap();
    let r = kv::call_with(
        addrs[l],
        &kv::Envelope {
            hops: 0,
            request: put("mixed"),
        },
        Duration::from_secs(2),
        Some(&mixed),
    )
    .await;
    assert!(r.is_err(), "{r:?}");

    // Would-be peers with a valid certificate that does not name the node they claim to be:
    // the client certificate as node 3, and node 2's certificate as node 3. Each sends a
    // heartbeat of term 1,000 as node 3.
    let cluster_id = RunnerConfig::new(NodeId(1), ".", vec![NodeId(1)]).cluster;
    let target = if l == 2 { (l + 1) % 3 } else { l };
    let claimed = 3u64;
    let node2 = Tls::from_pem(
        certs.g.ca_cert.as_bytes(),
        certs.g.nodes[1].1.as_bytes(),
        certs.g.nodes[1].2.as_bytes(),
    )
    .unwrap();
    for (what, who) in [
        ("client certificate", &certs.client),
        ("node 2's certificate", &node2),
    ] {
        let tcp = TcpStream::connect(addrs[target]).await.unwrap();
        let Ok(mut s) = who
            .connector()
            .connect(tls::server_name(target as u64 + 1), tcp)
            .await
        else {
            continue; // refused at the handshake: also fine
        };
        let body = postcard::to_allocvec(&(0x524C_4554u32, cluster_id, claimed)).unwrap();
        let mut bytes = b"P".to_vec();
        bytes.extend_from_slice(&(body.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&body);
        let codec = raftlet::wire::Codec::new(cluster_id, runner::MAX_FRAME);
        let msg: raftlet_tokio::net::Msg = raftlet::Message {
            from: NodeId(claimed),
            to: NodeId(target as u64 + 1),
            term: Term(1_000),
            body: raftlet::Body::Heartbeat {
                commit: raftlet::Index(0),
            },
        };
        let mut buf = vec![0u8; runner::MAX_FRAME + 4];
        let n = raftlet::wire::frame::encode_length_prefixed(&codec, &msg, &mut buf).unwrap();
        bytes.extend_from_slice(&buf[..n]);
        let _ = s.write_all(&bytes).await;
        let _ = s.flush().await;
        let mut sink = [0u8; 16];
        let _ = tokio::time::timeout(Duration::from_millis(300), s.read(&mut sink)).await;
        let st = nodes[target].status().await.unwrap();
        assert!(st.term < Term(1_000), "{what}: the forged term got in");
    }
    // Nothing changed: the same leader and term, nothing written by anyone else.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (l2, term2) = leader(&nodes).await;
    assert_eq!((l2, term2), (l, term));
    let st = nodes[l].status().await.unwrap();
    assert_eq!(st.commit, commit, "something was written");
    assert!(st.net.refused >= 2, "{:?}", st.net);
    for h in &nodes {
        h.shutdown().await;
    }
}
