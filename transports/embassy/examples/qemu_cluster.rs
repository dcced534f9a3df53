//! Three QEMU boards, each running `firmware/board` (one raftlet-embassy runner on its UART),
//! joined into one bus by this relay, which also damages the bus: it drops, corrupts and
//! duplicates frames, kills a board and starts it again on the same flash image, and cuts a
//! board off for a while. It passes when every board reports the same hash of the first
//! commands it applied, and the restarted board came back with its log from flash.
//!
//! ```sh
//! bash ci/firmware.sh            # builds the firmware, installs QEMU, runs this
//! cargo run -p raftlet-embassy --example qemu_cluster -- QEMU FIRMWARE_ELF [SEED]
//! ```
//!
//! Each board's UART0 is a QEMU chardev socket (a TCP server on 127.0.0.1) that the relay
//! connects to; a board's semihosting output (its report lines) arrives on QEMU's stderr; its
//! flash image is `board-<id>.flash` in the working directory, created erased by the relay.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::{Duration, Instant};

/// `FLASH_SIZE` of the firmware: 10 sectors of 1 KiB.
const FLASH_SIZE: usize = 10 * 1024;
/// What the firmware applies before it reports its hash.
const TARGET: u32 = 100;
const BOARDS: usize = 3;

enum Event {
    /// A frame (its terminating 0 included) from board `from`, of QEMU run `run`.
    Frame {
        from: usize,
        run: u32,
        bytes: Vec<u8>,
    },
    /// A line a board printed.
    Line { from: usize, line: String },
}

struct Board {
    child: Child,
    /// Writes to the board's UART.
    tx: TcpStream,
    run: u32,
}

fn start(qemu: &str, elf: &str, id: usize, run: u32, port: u16, events: &Sender<Event>) -> Board {
    let mut child = Command::new(qemu)
        .args(["-machine", "lm3s6965evb", "-nographic", "-monitor", "none"])
        .args([
            "-semihosting-config",
            &format!("enable=on,target=native,arg={id}"),
        ])
        .args([
            "-chardev",
            &format!("socket,id=uart,host=127.0.0.1,port={port},server=on,wait=off"),
        ])
        .args(["-serial", "chardev:uart", "-kernel", elf])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {qemu}: {e}"));
    let stderr = child.stderr.take().unwrap();
    let ev = events.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if ev.send(Event::Line { from: id, line }).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let stream = loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => break s,
            Err(e) if Instant::now() > deadline => panic!("board {id}'s UART socket: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    stream.set_nodelay(true).unwrap();
    let mut rx = stream.try_clone().unwrap();
    let ev = events.clone();
    std::thread::spawn(move || {
        let mut frame = Vec::new();
        let mut buf = [0u8; 512];
        while let Ok(n) = rx.read(&mut buf) {
            if n == 0 {
                break;
            }
            for &b in &buf[..n] {
                frame.push(b);
                if b == 0 {
                    let bytes = std::mem::take(&mut frame);
                    if ev
                        .send(Event::Frame {
                            from: id,
                            run,
                            bytes,
                        })
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
    });
    Board {
        child,
        tx: stream,
        run,
    }
}

#[derive(Default, Debug)]
struct Counts {
    frames: u64,
    forwarded: u64,
    dropped: u64,
    corrupted: u64,
    duplicated: u64,
    cut: u64,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: qemu_cluster QEMU FIRMWARE_ELF [SEED]");
        std::process::exit(2);
    }
    let (qemu, elf) = (args[1].as_str(), args[2].as_str());
    let seed: u64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(1);
    let elf = std::fs::canonicalize(elf).expect("firmware ELF");
    let elf = elf.to_str().unwrap();
    let dir = std::env::temp_dir().join(format!("raftlet-qemu-cluster-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::env::set_current_dir(&dir).unwrap();
    for id in 1..=BOARDS {
        std::fs::write(format!("board-{id}.flash"), vec![0xFF; FLASH_SIZE]).unwrap();
    }
    let base_port = 40_000 + (std::process::id() % 20_000) as u16;
    let port = |id: usize| base_port + id as u16;
    let mut rng = fastrand::Rng::with_seed(seed);
    let (events_tx, events): (Sender<Event>, Receiver<Event>) = channel();
    let mut boards: Vec<Board> = (1..=BOARDS)
        .map(|id| start(qemu, elf, id, 0, port(id), &events_tx))
        .collect();
    println!(
        "relay: 3 boards started (seed {seed}, working directory {})",
        dir.display()
    );

    let started = Instant::now();
    let timeout = Duration::from_secs(240);
    let mut counts = Counts::default();
    let mut applied = [0u32; BOARDS];
    let mut hashes: [Option<String>; BOARDS] = [None, None, None];
    let mut failed: Option<String> = None;
    // The script: board 3 is killed once every board applied 10 commands, and started again on
    // its flash image once the others applied 60 (their logs compacted past its end, so the
    // leader must bring it up with a snapshot, in notify mode); once it installed it, the
    // leader is cut off the bus for 3 s, and another board must take over.
    let mut killed_at: Option<Instant> = None;
    let mut restarted = false;
    let mut recovered_log: Option<u64> = None;
    let mut cut: Option<(usize, Instant)> = None;
    let mut cut_done = false;
    let mut leader: Option<usize> = None;
    let mut leader_after_cut: Option<usize> = None;
    // Notify-mode install on board 3: its own InstallComplete, and its leader's for it.
    let mut installed = false;
    let mut complete_follower = false;
    let mut complete_leader: Option<usize> = None;

    while started.elapsed() < timeout && failed.is_none() {
        if killed_at.is_some() && !restarted && applied[0] >= 60 && applied[1] >= 60 {
            let run = boards[2].run + 1;
            boards[2] = start(qemu, elf, 3, run, port(3), &events_tx);
            restarted = true;
            println!("relay: board 3 started again on its flash image");
        }
        if let Some((b, at)) = cut
            && at.elapsed() > Duration::from_secs(3)
        {
            println!("relay: board {} back on the bus", b + 1);
            cut = None;
        }
        let ev = match events.recv_timeout(Duration::from_millis(100)) {
            Ok(ev) => ev,
            Err(_) => continue,
        };
        match ev {
            Event::Line { from, line } => {
                if line.contains("Timer with period zero") {
                    continue;
                }
                println!("[board {from}] {line}");
                let k = from - 1;
                if ["HardFault", "panic", "stopped", "fatal", "Lockup"]
                    .iter()
                    .any(|w| line.contains(w))
                {
                    failed = Some(format!("board {from} failed: {line}"));
                }
                if let Some(rest) = line.split("up, log ").nth(1)
                    && restarted
                    && from == 3
                {
                    recovered_log = rest.split(' ').next().and_then(|n| n.parse().ok());
                }
                if let Some(n) = line
                    .split("applied ")
                    .nth(1)
                    .and_then(|r| r.split(' ').next())
                    .and_then(|n| n.parse::<u32>().ok())
                {
                    applied[k] = n;
                }
                if let Some(h) = line.split("hash ").nth(1) {
                    // The restarted board reports again from its new start: keep the latest.
                    hashes[k] = Some(h.trim().to_string());
                }
                if line.contains("leading in term") {
                    leader = Some(k);
                    if cut.is_some() {
                        leader_after_cut = Some(k);
                    }
                }
                if killed_at.is_none() && applied.iter().all(|&a| a >= 10) {
                    println!("relay: killing board 3");
                    let _ = boards[2].child.kill();
                    let _ = boards[2].child.wait();
                    killed_at = Some(Instant::now());
                    hashes[2] = None;
                    applied[2] = 0;
                }
                if from == 3 && restarted && line.contains("installed board") {
                    installed = true;
                }
                if line.contains("install complete, peer 3") {
                    if from == 3 {
                        complete_follower = true;
                    } else {
                        complete_leader = Some(k);
                    }
                }
                if restarted && !cut_done && from == 3 && line.contains("install complete") {
                    let l = leader.unwrap_or(0);
                    println!(
                        "relay: the leader, board {}, cut off the bus for 3 s",
                        l + 1
                    );
                    cut = Some((l, Instant::now()));
                    cut_done = true;
                }
                if restarted && hashes.iter().all(Option::is_some) {
                    break;
                }
            }
            Event::Frame { from, run, bytes } => {
                let k = from - 1;
                if run != boards[k].run || (k == 2 && killed_at.is_some() && !restarted) {
                    continue;
                }
                counts.frames += 1;
                for (j, to) in boards.iter_mut().enumerate() {
                    if j == k {
                        continue;
                    }
                    if cut.is_some_and(|(b, _)| b == j || b == k) {
                        counts.cut += 1;
                        continue;
                    }
                    if j == 2 && killed_at.is_some() && !restarted {
                        continue;
                    }
                    let r = rng.u32(0..100);
                    if r < 5 {
                        counts.dropped += 1;
                        continue;
                    }
                    let mut out = bytes.clone();
                    if r < 8 && out.len() > 2 {
                        let at = rng.usize(0..out.len() - 1);
                        out[at] ^= rng.u8(1..=255);
                        counts.corrupted += 1;
                    }
                    let copies = if r >= 98 { 2 } else { 1 };
                    counts.duplicated += copies - 1;
                    for _ in 0..copies {
                        let _ = to.tx.write_all(&out);
                    }
                    counts.forwarded += 1;
                }
            }
        }
    }
    for b in &mut boards {
        let _ = b.child.kill();
        let _ = b.child.wait();
    }
    println!(
        "relay: {:.1} s, {} frames sent by the boards: {} forwarded, {} dropped, {} corrupted, \
         {} duplicated, {} cut by the partition",
        started.elapsed().as_secs_f64(),
        counts.frames,
        counts.forwarded,
        counts.dropped,
        counts.corrupted,
        counts.duplicated,
        counts.cut
    );
    let _ = std::fs::remove_dir_all(&dir);
    if let Some(f) = failed {
        eprintln!("relay: FAILED: {f}");
        std::process::exit(1);
    }
    if !hashes.iter().all(Option::is_some) {
        eprintln!(
            "relay: FAILED: not every board applied {TARGET} commands within {timeout:?} (applied {applied:?})"
        );
        std::process::exit(1);
    }
    if hashes.iter().any(|h| h != &hashes[0]) {
        eprintln!("relay: FAILED: the boards applied different commands: {hashes:?}");
        std::process::exit(1);
    }
    if !(installed && complete_follower && complete_leader.is_some()) {
        eprintln!(
            "relay: FAILED: board 3 did not install a snapshot in notify mode with \
             InstallComplete on both sides (installed {installed}, follower's event \
             {complete_follower}, leader's event {complete_leader:?})"
        );
        std::process::exit(1);
    }
    // No separate check that another board took over: with the leader cut off, the cluster
    // reaches its target only if one did (the line below names it).
    match recovered_log {
        Some(n) if n > 0 => {}
        other => {
            eprintln!(
                "relay: FAILED: board 3 did not come back with its log from flash ({other:?})"
            );
            std::process::exit(1);
        }
    }
    println!(
        "relay: every board applied the same {TARGET} commands (hash {}); board 3 came back \
         with {} log entries from its flash image, installed the leader's snapshot in notify \
         mode (InstallComplete on board 3 and on board {}); board {} led while the leader was \
         cut off (0: none seen)",
        hashes[0].as_deref().unwrap_or("?"),
        recovered_log.unwrap_or(0),
        complete_leader.map_or(0, |k| k + 1),
        leader_after_cut.map_or(0, |k| k + 1)
    );
}
