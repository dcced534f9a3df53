//! Prints the RAM a node takes for the built-in profiles and a few payload types.
//!
//! `cargo run --example footprint`

use raftlet::{DefaultAction, DefaultMessage, DefaultNode, Entry, TinyMessage, TinyNode};
use std::mem::size_of;

fn main() {
    println!("{:<48} {:>9}", "type", "bytes");
    println!(
        "{:<48} {:>9}",
        "DefaultNode<Vec<u8>>",
        size_of::<DefaultNode<Vec<u8>>>()
    );
    println!(
        "{:<48} {:>9}",
        "DefaultNode<u64>",
        size_of::<DefaultNode<u64>>()
    );
    println!(
        "{:<48} {:>9}",
        "DefaultMessage<Vec<u8>>",
        size_of::<DefaultMessage<Vec<u8>>>()
    );
    println!(
        "{:<48} {:>9}",
        "DefaultAction<Vec<u8>>",
        size_of::<DefaultAction<Vec<u8>>>()
    );
    println!(
        "{:<48} {:>9}",
        "Entry<Vec<u8>>",
        size_of::<Entry<Vec<u8>>>()
    );
    println!(
        "{:<48} {:>9}",
        "TinyNode<heapless::Vec<u8, 32>>",
        size_of::<TinyNode<heapless::Vec<u8, 32>>>()
    );
    println!("{:<48} {:>9}", "TinyNode<u32>", size_of::<TinyNode<u32>>());
    println!(
        "{:<48} {:>9}",
        "TinyMessage<heapless::Vec<u8, 32>>",
        size_of::<TinyMessage<heapless::Vec<u8, 32>>>()
    );
}
