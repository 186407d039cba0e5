//! The queue items this process's assigners have read and not yet claimed or let go.
//!
//! An assignment reads its next row and claims it in two statements, each committed on its
//! own, and nothing holds the row in between. Two assigners of one process reading at once
//! would both get the head of the queue, and one of them would lose the claim and read
//! again. So reads take turns, each stepping over the rows the others hold in hand, and a
//! row stays in hand until its claim has committed (from then on the claims exclude it) or
//! its assigner lets go of it. Assigners in other processes are not seen here: they may
//! read the same row, and the claim decides between them (the loser reads again).

use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::{Mutex as TurnLock, MutexGuard};

/// How long an assigner waits for its turn to read before giving up (as it would for a
/// pooled connection): each turn is one statement, so a longer wait means the database is
/// not answering.
const TURN_TIMEOUT: Duration = crate::db::ACQUIRE_TIMEOUT;

/// See the module documentation.
#[derive(Debug, Default)]
pub struct ItemsInHand {
    turn: TurnLock<()>,
    // One entry per holder: the same id twice only if another process's claim won a row
    // this process read (then both holders let go).
    held: Mutex<Vec<i64>>,
}

/// An assigner's turn to read the next row: no other assigner of this process reads until
/// it ends, by [`Turn::hold`] or by being dropped.
#[derive(Debug)]
pub struct Turn<'a> {
    _turn: MutexGuard<'a, ()>,
    hand: &'a ItemsInHand,
}

/// A row an assigner holds in hand; dropping it lets go.
#[derive(Debug)]
pub struct HeldItem<'a> {
    hand: &'a ItemsInHand,
    id: i64,
}

/// The turn did not come within [`TURN_TIMEOUT`].
#[derive(Debug, thiserror::Error)]
#[error("no turn to read the queue within {TURN_TIMEOUT:?}")]
pub struct TurnTimedOut;

impl ItemsInHand {
    /// Waits for this assigner's turn to read.
    pub async fn take_turn(&self) -> Result<Turn<'_>, TurnTimedOut> {
        let turn = tokio::time::timeout(TURN_TIMEOUT, self.turn.lock())
            .await
            .map_err(|_| TurnTimedOut)?;
        Ok(Turn {
            _turn: turn,
            hand: self,
        })
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Vec<i64>> {
        // The list stays consistent even if a holder panicked: each change is one push or
        // one removal.
        self.held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl<'a> Turn<'a> {
    /// The rows other assigners of this process hold, for the read to step over.
    pub fn held_by_others(&self) -> Vec<i64> {
        self.hand.held().clone()
    }

    /// Ends the turn holding `id`.
    pub fn hold(self, id: i64) -> HeldItem<'a> {
        self.hand.held().push(id);
        HeldItem {
            hand: self.hand,
            id,
        }
    }
}

impl Drop for HeldItem<'_> {
    fn drop(&mut self) {
        let mut held = self.hand.held();
        if let Some(index) = held.iter().position(|&id| id == self.id) {
            held.swap_remove(index);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_held_row_is_stepped_over_until_let_go() {
        let hand = ItemsInHand::default();
        let first = hand.take_turn().await.unwrap().hold(7);
        let turn = hand.take_turn().await.unwrap();
        assert_eq!(turn.held_by_others(), vec![7]);
        let second = turn.hold(9);
        drop(first);
        let turn = hand.take_turn().await.unwrap();
        assert_eq!(turn.held_by_others(), vec![9]);
        drop(turn);
        drop(second);
        assert!(hand.take_turn().await.unwrap().held_by_others().is_empty());
    }

    #[tokio::test]
    async fn a_turn_is_had_by_one_assigner_at_a_time() {
        let hand = ItemsInHand::default();
        let turn = hand.take_turn().await.unwrap();
        assert!(hand.turn.try_lock().is_err());
        let held = turn.hold(1);
        assert!(hand.turn.try_lock().is_ok());
        drop(held);
    }
}
