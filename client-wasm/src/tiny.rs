//! The runtime pieces std would otherwise provide, for the `tiny` release
//! build (no_std). The wasm, its JS glue and the service module must stay
//! under 10 KB gzip together.
//!
//! - Panics: std's handler formats the message and location, which links
//!   `core::fmt` (several KB) even if no panic ever happens. This one traps:
//!   the wasm call ends, the ERP page goes on, and the server still
//!   enforces the timeout.
//! - Allocator: dlmalloc, the one std itself uses on wasm32, through the
//!   `dlmalloc` crate's safe `GlobalDlmalloc`. no_std needs one declared
//!   because wasm-bindgen's runtime links `alloc`. But the client never
//!   allocates, so none of it reaches the wasm that ships:
//!   - its state is a `static` (`web.rs`) and the core queues its actions
//!     in a fixed array;
//!   - no string or vector is passed in from JS, so wasm-bindgen drops its
//!     unused `__wbindgen_malloc`/`realloc`/`free` exports;
//!   - no owned JS value enters the wasm (the host is only lent to each
//!     call, and its methods return numbers), so wasm-bindgen's externref
//!     table, whose slot allocator is a `Vec`, is never allocated from;
//!   - no exported struct (wasm-bindgen boxes those) and no closure.
//!
//!   wasm-opt then removes dlmalloc with the rest of the dead code.
//!   `scripts/build-wasm.sh` fails the build if any allocator code is left
//!   in the wasm (by function name, by `memory.grow`, by the glue calling an
//!   allocation entry point), so a change that allocates cannot bring it
//!   back unnoticed.
//!
//!   Turning the `reference-types` target feature off, to make wasm-bindgen
//!   keep JS values in a JS-side array instead of the externref table, does
//!   not work with the prebuilt wasm32 sysroot: its crates (`core`, `alloc`,
//!   `compiler_builtins`), compiled with the target's default features,
//!   put the feature back into the linked module's `target_features`, and
//!   wasm-bindgen, seeing it there, fails for want of the table allocator
//!   that its runtime crate, built without the feature, left out. Not
//!   needing the table allocator at all makes the question moot.

#[global_allocator]
static ALLOCATOR: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;

#[panic_handler]
fn panic(_info: &::core::panic::PanicInfo) -> ! {
    ::core::arch::wasm32::unreachable()
}
