//! A copy of the shipped configuration (flows/, formats/, prompts/) in a folder of one's own, for
//! tests and benches that add, break or watch a file (shared by tests/common and benches/).

use std::path::Path;

/// Copies the shipped configuration into `to`.
pub fn copy_shipped_config(to: &Path) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for folder in ["flows", "formats", "prompts"] {
        copy_dir(&root.join(folder), &to.join(folder));
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
