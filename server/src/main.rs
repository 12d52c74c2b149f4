use std::process::ExitCode;

/// Many small allocations per message (records, delivery futures): mimalloc
/// serves them markedly faster than the system allocator (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    server::cli::main()
}
