//! The single integration-test binary of pstl (each test binary links libtorch, so
//! there is only one). Modules mirror the library's.

mod cli;
mod common;
mod config;
mod data;
mod eval;
mod interop;
mod model;
mod perf;
mod plot;
mod synth;
mod torchpt;
mod train;
