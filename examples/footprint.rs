//! Prints the RAM a node takes for the built-in profiles and a few payload types, and the size
//! of what moves per message: a queued message, an action, owned messages.
//!
//! `cargo run --example footprint`

use raftlet::{Action, DefaultMessage, DefaultNode, Entry, Message, Queued, TinyMessage, TinyNode};
use std::mem::size_of;

fn row(name: &str, bytes: usize) {
    println!("{name:<56} {bytes:>9}");
}

fn main() {
    println!("{:<56} {:>9}", "type", "bytes");
    row("DefaultNode<Vec<u8>>", size_of::<DefaultNode<Vec<u8>>>());
    row("DefaultNode<u64>", size_of::<DefaultNode<u64>>());
    row(
        "Queued (any message as the node queues it)",
        size_of::<Queued>(),
    );
    row("Action<'_, Vec<u8>>", size_of::<Action<'_, Vec<u8>>>());
    row(
        "Action<'_, heapless::Vec<u8, 128>>",
        size_of::<Action<'_, heapless::Vec<u8, 128>>>(),
    );
    row(
        "Message<Vec<u8>, Vec<Entry<Vec<u8>>>> (owned, std)",
        size_of::<Message<Vec<u8>, Vec<Entry<Vec<u8>>>>>(),
    );
    row(
        "Message<Vec<u8>, &[Entry<Vec<u8>>]> (borrowed)",
        size_of::<Message<Vec<u8>, &[Entry<Vec<u8>>]>>(),
    );
    row(
        "DefaultMessage<Vec<u8>> (owned, heapless)",
        size_of::<DefaultMessage<Vec<u8>>>(),
    );
    row("Entry<Vec<u8>>", size_of::<Entry<Vec<u8>>>());
    row(
        "TinyNode<heapless::Vec<u8, 32>>",
        size_of::<TinyNode<heapless::Vec<u8, 32>>>(),
    );
    row("TinyNode<u32>", size_of::<TinyNode<u32>>());
    row(
        "TinyMessage<heapless::Vec<u8, 32>>",
        size_of::<TinyMessage<heapless::Vec<u8, 32>>>(),
    );
}
