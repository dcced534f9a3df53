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
