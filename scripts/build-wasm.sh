#!/usr/bin/env bash
# Trunk's pre_build hook (Trunk.toml): builds the UI's WebAssembly split per
# page, so that a first visit downloads the shell and the page it opens,
# and each other page's code when it is opened (Leptos `#[lazy]`).
# Trunk has no splitting step of its own, so this does what its Rust
# pipeline would: cargo build (with relocations kept, which the splitter
# needs), wasm-split-cli, wasm-bindgen, wasm-opt. Trunk then copies
# target/ui-pkg into dist/ui-pkg; frontend/web/index.html loads it.
set -euo pipefail
cd "$(dirname "$0")/.."

target_dir="${CARGO_TARGET_DIR:-target}"
raw="$target_dir/wasm32-unknown-unknown/wasm-release/frontend.wasm"
split="$target_dir/ui-split"
# Where frontend/web/index.html has Trunk copy it from.
out=target/ui-pkg

cargo build --locked --profile wasm-release --target wasm32-unknown-unknown -p frontend
rm -rf "$split" "$out"
wasm-split-cli "$raw" "$split" --target web --out-name frontend
wasm-bindgen --target web --keep-lld-exports --no-demangle --no-typescript \
  --out-dir "$out" --out-name frontend "$split/frontend.wasm"
find "$split" -maxdepth 1 -name '*.wasm' ! -name frontend.wasm -exec cp {} "$out/" \;
cp "$split/__wasm_split.js" "$out/"
# Every module at -Oz, two at a time.
find "$out" -name '*.wasm' -print0 |
  xargs -0 -P 2 -I{} wasm-opt -Oz --enable-bulk-memory --enable-nontrapping-float-to-int \
    --enable-sign-ext --enable-mutable-globals --strip-debug --strip-producers {} -o {} 2>/dev/null
