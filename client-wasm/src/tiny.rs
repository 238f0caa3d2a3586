//! The runtime pieces std would otherwise provide, for the `tiny` release
//! build (no_std), chosen for size: the wasm, its JS glue and the service
//! module must stay under 10 KB gzip together.
//!
//! - Panics: std's handler formats the message and location, which links
//!   `core::fmt` (several KB) even if no panic ever happens. This one traps:
//!   the wasm instance ends, the ERP page goes on, and the server still
//!   enforces the timeout.
//! - Allocator: lol_alloc's free-list allocator behind its lock (the safe
//!   constructor; no `unsafe` here). std's dlmalloc costs 2.4 KB gzip more,
//!   which alone breaks the budget. The client allocates a few dozen small
//!   blocks at start (closures, the shared state, wasm-bindgen's externref
//!   table) and next to nothing afterwards, so a simple allocator is enough.

#[global_allocator]
static ALLOCATOR: lol_alloc::LockedAllocator<lol_alloc::FreeListAllocator> =
    lol_alloc::LockedAllocator::new(lol_alloc::FreeListAllocator::new());

#[panic_handler]
fn panic(_info: &::core::panic::PanicInfo) -> ! {
    ::core::arch::wasm32::unreachable()
}
