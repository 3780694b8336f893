//! What a write transaction locks on PostgreSQL, where several servers write at once. (SQLite
//! has one writer per file: a scope means nothing there.)
//!
//! Every write names, before it starts, the accounts whose rows it reads to decide and
//! changes: the path's owner, and for a hashmap PUT or a copy also the writer whose uploads it
//! names and the source's owner. It takes one transaction-scoped advisory lock per account,
//! after a shared lock on the whole schema, always in one order (schema, then accounts by
//! key, then the block sweep), so two writers never wait on each other in a cycle and writes
//! of different accounts run side by side across servers. What rests on the account lock is
//! everything that is an account's own: its containers, paths and versions (If-Match races,
//! a path's `latest`), its counters and quotas, the blocks it holds or sent
//! (`account_blocks`), its tokens.
//!
//! What accounts share is made safe by the rows themselves: `blocks` (a block's holders and
//! its collection) changes only by single statements that lock the row (an upsert, an
//! `UPDATE ... RETURNING`, the collector's `SELECT ... FOR UPDATE`), and names (a user's
//! name, the collector's lease) have a lock of their own. The collector's sweep of files the
//! database does not know takes the sweep lock exclusively; a block upload's commit takes it
//! shared (its file exists before its row does: see `gc`). A migration into an empty schema
//! takes the schema lock exclusively: nobody else writes meanwhile.
//!
//! Locks are keyed by FNV-1a hashes: two accounts sharing a key only wait for each other.

/// The lock set of one write transaction.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// The whole schema, exclusively.
    pub everything: bool,
    /// Accounts and other names (see [`Scope::name`]), each locked exclusively.
    pub names: Vec<String>,
    pub sweep: Sweep,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Sweep {
    #[default]
    None,
    /// A block upload's commit: no sweep of stray files runs meanwhile.
    Shared,
    /// The sweep of stray files: no block upload commits meanwhile.
    Exclusive,
}

/// Second keys reserved for the schema-wide and sweep locks; accounts get the others.
pub const KEY_SCHEMA: i32 = 0;
pub const KEY_SWEEP: i32 = 1;

impl Scope {
    /// Nothing but the shared schema lock: a write of rows only the database's own row locks
    /// guard (a block marked lost).
    pub fn rows() -> Scope {
        Scope::default()
    }

    pub fn account(account: &str) -> Scope {
        Scope::accounts([account])
    }

    pub fn accounts<'a>(accounts: impl IntoIterator<Item = &'a str>) -> Scope {
        Scope {
            names: accounts.into_iter().map(str::to_string).collect(),
            ..Scope::default()
        }
    }

    /// A lock on something that is not an account (`user:NAME`, `gc`): such names start
    /// with a NUL, which no account uuid does.
    pub fn name(name: &str) -> Scope {
        Scope {
            names: vec![format!("\0{name}")],
            ..Scope::default()
        }
    }

    /// This scope and one account more.
    pub fn and(mut self, account: &str) -> Scope {
        self.names.push(account.to_string());
        self
    }

    pub fn everything() -> Scope {
        Scope {
            everything: true,
            ..Scope::default()
        }
    }

    pub fn with_sweep(mut self, sweep: Sweep) -> Scope {
        self.sweep = sweep;
        self
    }

    /// The second keys of the account and name locks, in the order they are taken: sorted,
    /// each once.
    pub fn keys(&self) -> Vec<i32> {
        let mut keys: Vec<i32> = self.names.iter().map(|n| key_of(n)).collect();
        keys.sort_unstable();
        keys.dedup();
        keys
    }
}

fn key_of(name: &str) -> i32 {
    let h = name
        .bytes()
        .fold(0x811c_9dc5u32, |h, b| (h ^ b as u32).wrapping_mul(0x0100_0193)) as i32;
    // (the reserved keys are never an account's)
    if h == KEY_SCHEMA || h == KEY_SWEEP {
        2
    } else {
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_sorted_once_each_and_never_the_reserved_ones() {
        let s = Scope::accounts(["b", "a", "b", "c"]);
        let k = s.keys();
        assert_eq!(k.len(), 3);
        assert!(k.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(Scope::accounts(["c", "a", "b"]).keys(), k);
        assert!(!k.contains(&KEY_SCHEMA) && !k.contains(&KEY_SWEEP));
        // (a name is not the account of the same spelling)
        assert_ne!(Scope::name("a").keys(), Scope::account("a").keys());
    }
}
