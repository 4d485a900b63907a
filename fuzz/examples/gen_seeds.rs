//! Write the seed corpus and replay it through the harnesses.
//!
//! ```text
//! cd fuzz
//! cargo +nightly run --example gen_seeds                     # (re)write corpus/<target>/seed-*
//! cargo +nightly run --example gen_seeds -- replay T FILE…   # run files through target T natively
//! ```

use std::path::Path;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [cmd, target, files @ ..] = args.as_slice()
        && cmd == "replay"
    {
        for file in files {
            let data = std::fs::read(file).unwrap_or_else(|e| panic!("{file}: {e}"));
            roomwire_fuzz::seeds::replay(target, &data);
            println!("{file}: ok");
        }
        return;
    }
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let seeds = roomwire_fuzz::seeds::all();
    for (target, name, bytes) in &seeds {
        roomwire_fuzz::seeds::replay(target, bytes);
        let dir = corpus.join(target);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let path = dir.join(format!("seed-{name}"));
        std::fs::write(&path, bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
    println!("wrote and replayed {} seeds under {}", seeds.len(), corpus.display());
}
