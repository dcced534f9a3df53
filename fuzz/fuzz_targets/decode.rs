//! Arbitrary bytes into the frame decoder, the group frame reader and both stream readers:
//! never a panic, and whatever decodes re-encodes to a frame that decodes to the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use raftlet::Message;
use raftlet::wire::frame::{CobsReader, LengthPrefixedReader};
use raftlet::wire::group::{GroupFrameReader, GroupFrameWriter};
use raftlet::wire::{Codec, max_frame_len};

type Payload = heapless::Vec<u8, 64>;
type Es = heapless::Vec<raftlet::Entry<Payload>, 16>;
const MAX: usize = max_frame_len::<Payload, 16>();
const CODEC: Codec = Codec::new(0xC1, MAX);

fn check(frame: &[u8]) {
    if let Ok(m) = CODEC.decode::<Payload, Es>(frame) {
        let m: Message<Payload, Es> = m;
        let mut buf = [0u8; MAX];
        let n = CODEC.encode(&m, &mut buf).expect("a decoded message re-encodes");
        assert_eq!(CODEC.decode::<Payload, Es>(&buf[..n]).expect("re-decodes"), m);
    }
    if let Ok(mut r) = GroupFrameReader::new(&CODEC, frame) {
        while let Some(Ok((g, m))) = r.next::<Payload, Es>() {
            let m: Message<Payload, Es> = m;
            let mut buf = [0u8; MAX + 16];
            let codec = Codec::new(CODEC.cluster(), MAX + 16);
            let mut w = GroupFrameWriter::new(&codec, &mut buf).expect("a header fits");
            w.push(g, &m).expect("a decoded message re-encodes");
            let mut again = GroupFrameReader::new(&codec, w.frame()).expect("re-decodes");
            assert_eq!(again.next::<Payload, Es>(), Some(Ok((g, m))));
        }
    }
}

fuzz_target!(|data: &[u8]| {
    check(data);
    let mut lp = LengthPrefixedReader::<MAX>::new();
    let mut input = data;
    while let Some(r) = lp.feed(&mut input) {
        if let Ok(f) = r {
            check(f);
        }
    }
    let mut cobs = CobsReader::<MAX>::new();
    let mut input = data;
    while let Some(r) = cobs.feed(&mut input) {
        if let Ok(f) = r {
            check(f);
        }
    }
});
