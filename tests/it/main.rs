//! The single integration-test binary of pstl (each test binary links libtorch, so
//! there is only one). Modules mirror the library's.

mod architecture;
mod bad_input;
mod cli;
mod common;
mod config;
mod data;
mod ddp;
mod dist;
mod ecosystem;
mod eval;
mod faults;
mod fidelity;
mod fuzz;
mod integrity;
mod interop;
mod model;
mod perf;
mod plot;
mod synth;
mod torchpt;
mod train;
mod viz;
