use std::process::ExitCode;

/// Many small allocations per message (records, delivery futures, and in
/// librdkafka each message and header): mimalloc serves them markedly faster
/// than the system allocator. Its `override` feature makes it the C
/// `malloc` too, so librdkafka's allocations, which are often freed on
/// another thread than the one that made them, go through it as well
/// (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    server::cli::main()
}
