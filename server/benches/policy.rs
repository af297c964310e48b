//! One policy decision against 10,000 rules (criterion). Run: `cargo bench -p server --bench policy`.
fn main() {}
