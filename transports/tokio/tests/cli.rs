//! The `raftlet-kv` command line: help and version on stdout with exit 0, mistakes named on
//! stderr with exit 64, durations checked, unreachable nodes reported with the documented
//! exit codes, and no input that makes it panic.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_raftlet-kv"))
        .args(args)
        .output()
        .expect("run raftlet-kv")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// An address nothing listens on.
fn dead_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

#[test]
fn help_and_version_go_to_stdout_with_exit_0() {
    for args in [
        &["--help"][..],
        &["help"],
        &["serve", "--help"],
        &["help", "put"],
        &["bench", "--help"],
        &["status", "-h"],
    ] {
        let o = run(args);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", text(&o.stderr));
        assert!(text(&o.stdout).contains("Usage"), "{args:?}");
        assert!(o.stderr.is_empty(), "{args:?}: {}", text(&o.stderr));
    }
    assert!(text(&run(&["serve", "--help"]).stdout).contains("--data"));
    let v = run(&["--version"]);
    assert_eq!(v.status.code(), Some(0));
    assert_eq!(
        text(&v.stdout).trim(),
        format!("raftlet-kv {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn mistakes_are_named_on_stderr_with_exit_64() {
    let a = dead_addr();
    let cases: &[(&[&str], &str)] = &[
        (&[], "Usage"),
        (&["frobnicate"], "frobnicate"),
        (&["serve", "--bogus"], "--bogus"),
        (
            &[
                "serve",
                "--id",
                "x",
                "--peers",
                "1=127.0.0.1:1",
                "--data",
                "d",
            ],
            "--id",
        ),
        (
            &[
                "serve",
                "--id",
                "1",
                "--peers",
                "1-127.0.0.1",
                "--data",
                "d",
            ],
            "--peers",
        ),
        (&["put", "k", "v", "--addr", "nowhere"], "--addr"),
        (
            &["put", "k", "v", "--addr", &a, "--timeout", "-1"],
            "--timeout",
        ),
        (
            &["put", "k", "v", "--addr", &a, "--timeout", "NaN"],
            "--timeout",
        ),
        (
            &["put", "k", "v", "--addr", &a, "--timeout", "abc"],
            "--timeout",
        ),
        (&["put", "k", "--addr", &a], "VALUE"),
        (&["get", "k"], "--addr"),
        (&["bench", "--addr", &a, "--clients", "0"], "--clients"),
        (&["promote", "x", "--addr", &a], "ID"),
    ];
    for (args, named) in cases {
        let o = run(args);
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(64), "{args:?}: {err}");
        assert!(err.contains(named), "{args:?} does not name {named}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

#[test]
fn unreachable_nodes_give_the_documented_exit_codes_within_the_timeout() {
    let (a, b) = (dead_addr(), dead_addr());
    let t0 = Instant::now();
    // --addr=host:port works; a write no node could take is certainly not applied (2), after
    // retrying both addresses until the timeout.
    let o = run(&[
        "put",
        "k",
        "v",
        &format!("--addr={a},{b}"),
        "--timeout",
        "400ms",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("not applied"));
    assert!(t0.elapsed() >= Duration::from_millis(300));
    assert!(t0.elapsed() < Duration::from_secs(5));
    // Status of a dead node says so, and exits 1.
    let o = run(&["status", "--addr", &a, "--timeout", "300ms"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stdout).contains("unreachable"),
        "{}",
        text(&o.stdout)
    );
    let o = run(&["status", "--addr", &a, "--json", "--timeout", "300ms"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("status --json is JSON");
    assert!(v[0]["error"].is_string());
}

#[test]
fn no_command_line_makes_it_panic() {
    let a = dead_addr();
    let odd = [
        "",
        "-",
        "--",
        "=",
        "--addr=",
        ",",
        "1=",
        "=1",
        "99999999999999999999",
        "-0",
        "1e309",
        "inf",
        "é",
        "0s",
        "1ns",
        "18446744073709551616",
        "--help=no",
    ];
    for cmd in [
        "put",
        "get",
        "cas",
        "status",
        "bench",
        "serve",
        "promote",
        "add-learner",
    ] {
        for x in odd {
            let o = run(&[cmd, x, x, "--addr", &a, "--timeout", "50ms"]);
            let err = text(&o.stderr);
            assert!(!err.contains("panicked"), "{cmd} {x:?}: {err}");
            assert!(
                matches!(o.status.code(), Some(0..=4 | 64)),
                "{cmd} {x:?}: exit {:?}",
                o.status.code()
            );
            let o = run(&[cmd, "--timeout", x, "--addr", &a, "k"]);
            assert!(
                !text(&o.stderr).contains("panicked"),
                "{cmd} --timeout {x:?}"
            );
        }
    }
}

#[test]
fn every_subcommand_parses() {
    // clap checks a command's definition when it is first used (in debug builds): run each.
    for cmd in [
        "demo",
        "serve",
        "put",
        "get",
        "cas",
        "status",
        "digest",
        "add-learner",
        "promote",
        "remove",
        "bench",
    ] {
        let o = run(&[cmd, "--help"]);
        assert_eq!(o.status.code(), Some(0), "{cmd}: {}", text(&o.stderr));
    }
}

#[test]
fn serve_needs_tls_or_an_explicit_insecure_and_certs_make_a_working_tls_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let addr = dead_addr();
    let peers = format!("1={addr}");
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    // No TLS files and no --insecure: refused, with the reason.
    let o = run(&["serve", "--id", "1", "--peers", &peers, "--data", data]);
    assert_eq!(o.status.code(), Some(64));
    assert!(
        text(&o.stderr).contains("--insecure"),
        "{}",
        text(&o.stderr)
    );
    // Certificates for one node and a client; never overwritten.
    let certs = dir.path().join("certs");
    let c = |f: &str| certs.join(f).to_str().unwrap().to_string();
    let o = run(&["certs", "--nodes", "1", "--out", &c("")]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    for f in [
        "ca.pem",
        "ca-key.pem",
        "node-1.pem",
        "node-1-key.pem",
        "client.pem",
        "client-key.pem",
    ] {
        assert!(certs.join(f).exists(), "{f}");
    }
    assert_eq!(
        run(&["certs", "--nodes", "1", "--out", &c("")])
            .status
            .code(),
        Some(1)
    );
    // A one-node cluster over TLS takes a write from a client with the client certificate,
    // and not from one without.
    let mut node = Command::new(env!("CARGO_BIN_EXE_raftlet-kv"))
        .args(["serve", "--id", "1", "--peers", &peers, "--data", data])
        .args(["--tls-ca", &c("ca.pem"), "--tls-cert", &c("node-1.pem")])
        .args(["--tls-key", &c("node-1-key.pem")])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let client_tls = [
        "--tls-ca".to_string(),
        c("ca.pem"),
        "--tls-cert".to_string(),
        c("client.pem"),
        "--tls-key".to_string(),
        c("client-key.pem"),
    ];
    let mut put = vec!["put", "k", "v", "--addr", &addr, "--timeout", "10s"];
    put.extend(client_tls.iter().map(String::as_str));
    let o = run(&put);
    let mut get = vec!["get", "k", "--addr", &addr];
    get.extend(client_tls.iter().map(String::as_str));
    let g = run(&get);
    let plain = run(&["put", "k", "w", "--addr", &addr, "--timeout", "1s"]);
    let _ = node.kill();
    let _ = node.wait();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(text(&g.stdout).trim(), "v");
    assert_ne!(
        plain.status.code(),
        Some(0),
        "a client without a certificate wrote"
    );
}
