//! An append's entries as a runner hands them to `step`: borrowed (the node clones the ones it
//! appends) or the runner's to give away (the node moves them into its log).
//!
//! Invariant: only entries the node appends are taken, each at most once; a taken entry keeps
//! its index and term and is left with [`EntryData::Noop`] data, so the runner's container
//! stays valid (and cheap) to drop.

use crate::types::{Entry, EntryData};

pub(super) enum Cargo<'e, P> {
    /// Cloned into the log ([`Node::step`](crate::Node::step),
    /// [`Node::step_parts`](crate::Node::step_parts)).
    Borrowed(&'e [Entry<P>]),
    /// Moved into the log ([`Node::step_taking`](crate::Node::step_taking),
    /// [`Node::step_parts_taking`](crate::Node::step_parts_taking)).
    Taken(&'e mut [Entry<P>]),
}

impl<'e, P: Clone> Cargo<'e, P> {
    /// No entries (a message that is not an append).
    pub(super) const NONE: Self = Cargo::Borrowed(&[]);

    pub(super) fn as_slice(&self) -> &[Entry<P>] {
        match self {
            Cargo::Borrowed(s) => s,
            Cargo::Taken(s) => s,
        }
    }

    /// The entry at `i` (in bounds), to append: a clone, or the entry itself.
    #[inline]
    pub(super) fn take(&mut self, i: usize) -> Entry<P> {
        match self {
            Cargo::Borrowed(s) => s[i].clone(),
            Cargo::Taken(s) => {
                let e = &mut s[i];
                Entry {
                    term: e.term,
                    index: e.index,
                    data: core::mem::replace(&mut e.data, EntryData::Noop),
                }
            }
        }
    }
}
