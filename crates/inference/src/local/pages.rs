//! Memory for weight tensors, in 2 MiB pages where the kernel gives them.
//!
//! A decode step reads every weight once, from memory far larger than any cache. In 4 KiB pages
//! that stream misses the TLB every 4 KiB; in 2 MiB pages (Linux's transparent huge pages,
//! which most distributions give only to memory that asks for them, `madvise` mode) it streams
//! faster: on this project's 2-core machine an 8192 × 2048 Q8_0 matrix-vector product on two
//! threads streamed 13.5 GB/s from 4 KiB pages and 16.2 GB/s from 2 MiB pages (Q4_K: 11.0 and
//! 13.3 GB/s). So a tensor past 2 MiB is read into an anonymous mapping whose 2 MiB-aligned
//! interior is advised `MADV_HUGEPAGE`; the ends, and smaller tensors, stay in ordinary pages (a
//! huge page there would hold mostly nothing).

use std::ops::{Deref, DerefMut};

/// The huge page size the interior is aligned to.
const HUGE: usize = 2 << 20;

/// A weight tensor's bytes (zeroed until written).
pub struct WeightBytes(Storage);

enum Storage {
    Heap(Vec<u8>),
    Mapped {
        map: memmap2::MmapMut,
        start: usize,
        len: usize,
    },
}

impl std::fmt::Debug for WeightBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.0 {
            Storage::Heap(_) => "heap",
            Storage::Mapped { .. } => "mapped",
        };
        write!(f, "WeightBytes({} bytes, {kind})", self.len())
    }
}

impl WeightBytes {
    /// `len` zero bytes.
    pub fn zeroed(len: usize) -> Self {
        if len < HUGE {
            return Self(Storage::Heap(vec![0; len]));
        }
        // One huge page more than needed, so that the bytes can start on a 2 MiB boundary; the
        // pages never touched cost address space only.
        let map = match memmap2::MmapMut::map_anon(len + HUGE) {
            Ok(map) => map,
            Err(e) => {
                tracing::debug!("anonymous mapping of {len} bytes failed ({e}); using the heap");
                return Self(Storage::Heap(vec![0; len]));
            }
        };
        let start = (HUGE - map.as_ptr() as usize % HUGE) % HUGE;
        #[cfg(target_os = "linux")]
        if let Err(e) = map.advise_range(memmap2::Advice::HugePage, start, len / HUGE * HUGE) {
            // A kernel without transparent huge pages: ordinary pages, only slower.
            tracing::debug!("MADV_HUGEPAGE refused ({e}); weights stay in 4 KiB pages");
        }
        Self(Storage::Mapped { map, start, len })
    }

    /// Whether the bytes live in the huge-page-advised mapping.
    pub fn is_mapped(&self) -> bool {
        matches!(self.0, Storage::Mapped { .. })
    }
}

impl Deref for WeightBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match &self.0 {
            Storage::Heap(v) => v,
            Storage::Mapped { map, start, len } => map.get(*start..start + len).unwrap_or(&[]),
        }
    }
}

impl DerefMut for WeightBytes {
    fn deref_mut(&mut self) -> &mut [u8] {
        match &mut self.0 {
            Storage::Heap(v) => v,
            Storage::Mapped { map, start, len } => {
                map.get_mut(*start..*start + *len).unwrap_or(&mut [])
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_tensors_stay_on_the_heap_and_large_ones_start_on_a_huge_page() {
        let small = WeightBytes::zeroed(1000);
        assert!(!small.is_mapped());
        assert_eq!(small.len(), 1000);
        let mut large = WeightBytes::zeroed(3 * HUGE + 5);
        assert_eq!(large.len(), 3 * HUGE + 5);
        assert!(large.iter().all(|b| *b == 0));
        if large.is_mapped() {
            assert_eq!(large.as_ptr() as usize % HUGE, 0);
        }
        large[3 * HUGE + 4] = 7;
        large[0] = 1;
        assert_eq!((large[0], large[3 * HUGE + 4]), (1, 7));
        assert!(WeightBytes::zeroed(0).is_empty());
    }
}
