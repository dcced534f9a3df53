//! Puts the board's memory.x where cortex-m-rt's link.x finds it: the Cortex-M4F board for
//! thumbv7em-none-eabihf (FPU code), the Cortex-M3 board for the others.
use std::{env, fs, path::PathBuf};

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").unwrap());
    let target = env::var("TARGET").unwrap();
    let memory = if target.starts_with("thumbv7em") {
        "memory-m4.x"
    } else {
        "memory-m3.x"
    };
    fs::copy(memory, out.join("memory.x")).unwrap();
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed=memory-m3.x");
    println!("cargo:rerun-if-changed=memory-m4.x");
}
