//! Work shared out over candle's kernel threads.

use std::sync::Mutex;

/// Runs `f(i, piece)` for every piece on candle's kernel threads (the caller's among them), each
/// piece exactly once. The pieces are disjoint, so every thread writes its own memory.
pub(crate) fn par_pieces<F>(pieces: Vec<&mut [f32]>, f: F)
where
    F: Fn(usize, &mut [f32]) + Sync,
{
    let pieces: Vec<Mutex<&mut [f32]>> = pieces.into_iter().map(Mutex::new).collect();
    candle_core::utils::barrier_pool().execute_chunked(pieces.len(), |items| {
        for i in items {
            if let Some(piece) = pieces.get(i) {
                // Each index is handed out once, so the lock is never contended; a panic in
                // another piece poisons nothing this piece depends on.
                let mut piece = piece.lock().unwrap_or_else(|e| e.into_inner());
                f(i, &mut piece);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_are_each_visited_once() {
        let mut data = vec![0.0f32; 1000];
        let pieces = data.chunks_mut(7).collect();
        par_pieces(pieces, |i, piece| {
            for v in piece.iter_mut() {
                *v += i as f32 + 1.0;
            }
        });
        for (j, v) in data.iter().enumerate() {
            assert_eq!(*v, (j / 7) as f32 + 1.0);
        }
    }
}
