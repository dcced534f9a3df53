//! The stack, shared by the firmware crates (`#[path]`-included): its high-water (cortex-m-rt
//! paints the stack with `STACK_PAINT_VALUE` at reset, its `paint-stack` feature), and its
//! guard's fault handler.
//!
//! Stack guard: each firmware's memory.x gives the stack the bottom of RAM to itself, below
//! `.data` and `.bss`, so an overflowing stack runs off the start of RAM and faults instead of
//! overwriting the statics. The HardFault handler below first moves the stack pointer back to
//! the top of the stack region (the program never returns from a fault; a handler entered on
//! the overflowed stack would fault again and lock up), then reports over semihosting, prefixed
//! with the including crate's `FIRMWARE` name, and exits.
//! With its `overflow-test` feature a firmware overflows on purpose ([`overflow_on_purpose`]);
//! `ci/firmware.sh` checks that the report says the statics were intact.

// The HardFault handler, in assembly (it must not touch the stack before moving it).
core::arch::global_asm!(
    ".section .text.HardFault, \"ax\"",
    ".global HardFault",
    ".type HardFault, %function",
    ".thumb_func",
    "HardFault:",
    "ldr r0, =_stack_start",
    "msr msp, r0",
    "bl firmware_hard_fault",
);

/// A pattern in `.bss`: an overflow that runs into the statics overwrites it.
#[cfg(feature = "overflow-test")]
static CANARY: [core::sync::atomic::AtomicU32; 64] =
    [const { core::sync::atomic::AtomicU32::new(0) }; 64];
#[cfg(feature = "overflow-test")]
const CANARY_WORD: u32 = 0xA5A5_5A5A;

/// Overflows the stack on purpose (`overflow-test`): the guard must turn it into a HardFault,
/// whose report ([`fault_report`]) says whether the statics are intact. Returns only if
/// nothing faulted (no guard): the caller then fails.
#[cfg(feature = "overflow-test")]
pub fn overflow_on_purpose() -> u32 {
    for w in CANARY.iter() {
        w.store(CANARY_WORD, core::sync::atomic::Ordering::Relaxed);
    }
    recurse(0)
}

/// Uses about 1 KiB of stack per call, never returning early, until the stack overflows.
#[cfg(feature = "overflow-test")]
#[inline(never)]
fn recurse(depth: u32) -> u32 {
    let mut frame = [0u8; 1024];
    // SAFETY: a plain volatile write to a local array, so the frame is really used.
    unsafe { core::ptr::write_volatile(&mut frame[depth as usize % 1024], depth as u8) };
    if depth > 200 {
        return depth;
    }
    recurse(depth + 1) + u32::from(core::hint::black_box(frame[0]))
}

/// Called by the HardFault handler above, on a stack moved back to its top: reports what the
/// fault means and exits QEMU, with success only for an `overflow-test` overflow that the
/// guard stopped before the statics.
#[unsafe(no_mangle)]
extern "C" fn firmware_hard_fault() -> ! {
    use cortex_m_semihosting::{debug, heprintln};
    match fault_report() {
        Ok(what) => {
            heprintln!("{}: {}", super::FIRMWARE, what);
            debug::exit(debug::EXIT_SUCCESS);
        }
        Err(what) => {
            heprintln!("{}: {}", super::FIRMWARE, what);
            debug::exit(debug::EXIT_FAILURE);
        }
    }
    #[allow(clippy::empty_loop)]
    loop {}
}

/// What a HardFault means: with `overflow-test`, the guard's verdict (`Ok`: the overflow
/// faulted before it reached the statics); otherwise a plain fault (`Err`).
fn fault_report() -> Result<&'static str, &'static str> {
    #[cfg(feature = "overflow-test")]
    {
        let intact = CANARY
            .iter()
            .all(|w| w.load(core::sync::atomic::Ordering::Relaxed) == CANARY_WORD);
        if intact {
            Ok("stack overflow caught by the guard (HardFault), statics intact")
        } else {
            Err("HardFault after the stack overflowed into the statics")
        }
    }
    #[cfg(not(feature = "overflow-test"))]
    Err("HardFault")
}

/// Bytes of stack ever used: from the top of the stack down to the deepest word that is no
/// longer `STACK_PAINT_VALUE`.
pub fn stack_high_water() -> usize {
    unsafe extern "C" {
        static _stack_start: u32;
        static _stack_end: u32;
    }
    let top = core::ptr::addr_of!(_stack_start) as usize;
    let mut p = core::ptr::addr_of!(_stack_end) as usize;
    while p < top {
        // SAFETY: every word between `_stack_end` and `_stack_start` is RAM of this program.
        let w = unsafe { core::ptr::read_volatile(p as *const u32) };
        if w != cortex_m_rt::STACK_PAINT_VALUE {
            break;
        }
        p += 4;
    }
    top - p
}

/// Paints the unused part of the stack again (below the current stack pointer, with a margin),
/// so that [`stack_high_water`] measures from now on: the stack a phase of the program needs
/// after an earlier, deeper one.
#[allow(dead_code)]
pub fn repaint_stack() {
    unsafe extern "C" {
        static _stack_end: u32;
    }
    let bottom = core::ptr::addr_of!(_stack_end) as usize;
    let sp = cortex_m::register::msp::read() as usize;
    let mut p = bottom;
    while p + 256 < sp {
        // SAFETY: words between the bottom of the stack and well below the stack pointer are
        // unused stack.
        unsafe { core::ptr::write_volatile(p as *mut u32, cortex_m_rt::STACK_PAINT_VALUE) };
        p += 4;
    }
}
