//! Qdrant's server-side RRF, set up to give exactly our scores.
//!
//! Qdrant 1.16's RRF takes an integer `k` (default 2) and scores a point `1 / (k + position)`
//! with positions counted from 0; ours ([`corral_core::Fusion::Rrf`]) is `1 / (k + rank)` with
//! ranks from 1. So an integral `k` is sent as `k + 1`; any other `k` cannot be said to the
//! server and is fused here, like weighted fusion, by [`crate::fusion::fuse`].

/// The `k` to send to Qdrant's RRF for our `k`, when the server can compute exactly our scores.
pub fn server_k(k: f32) -> Option<u32> {
    if !(k.is_finite() && k >= 0.0 && k.fract() == 0.0 && k < u32::MAX as f32) {
        return None;
    }
    (k as u32).checked_add(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integral_k_goes_to_the_server_shifted_by_one() {
        assert_eq!(server_k(60.0), Some(61));
        assert_eq!(server_k(0.0), Some(1));
        assert_eq!(server_k(60.5), None);
        assert_eq!(server_k(-1.0), None);
        assert_eq!(server_k(f32::NAN), None);
        assert_eq!(server_k(f32::INFINITY), None);
        assert_eq!(server_k(1e12), None);
    }
}
