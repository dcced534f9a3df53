//! Stack high-water, shared by the firmware crates (`#[path]`-included): cortex-m-rt paints
//! the stack with `STACK_PAINT_VALUE` at reset (its `paint-stack` feature).

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
