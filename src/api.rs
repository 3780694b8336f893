//! Wire formats shared by the server and the filesystem's client: header names, JSON shapes,
//! block hashing and the Merkle hash, date formats, fault bodies. Nothing here does I/O; a
//! format that both sides speak is written down once, here.

pub mod astakos;
pub mod fault;
pub mod hashing;
pub mod lenient;
pub mod metafile;
pub mod pithos;
pub mod plankton;
pub mod timefmt;
