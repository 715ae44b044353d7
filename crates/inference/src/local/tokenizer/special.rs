//! Finding which special tokens occur in a text, in one pass (a byte trie over their texts).

/// A byte trie of special-token texts.
pub(crate) struct SpecialTrie {
    /// Node 0 is the root. Each node: sorted `(byte, child)` edges and the token ending there.
    nodes: Vec<Node>,
}

#[derive(Default)]
struct Node {
    edges: Vec<(u8, u32)>,
    token: Option<u32>,
}

impl SpecialTrie {
    pub(crate) fn new<'a>(specials: impl IntoIterator<Item = (u32, &'a str)>) -> Self {
        let mut nodes = vec![Node::default()];
        for (id, text) in specials {
            let mut cur = 0usize;
            for &b in text.as_bytes() {
                cur = match nodes[cur].edges.binary_search_by_key(&b, |&(e, _)| e) {
                    Ok(i) => nodes[cur].edges[i].1 as usize,
                    Err(i) => {
                        let next = nodes.len();
                        nodes.push(Node::default());
                        nodes[cur].edges.insert(i, (b, next as u32));
                        next
                    }
                };
            }
            nodes[cur].token.get_or_insert(id);
        }
        Self { nodes }
    }

    /// Calls `found` with the id of every special token occurring somewhere in `text` (possibly
    /// more than once).
    pub(crate) fn occurring(&self, text: &str, mut found: impl FnMut(u32)) {
        let bytes = text.as_bytes();
        let root = &self.nodes[0];
        for start in 0..bytes.len() {
            if root
                .edges
                .binary_search_by_key(&bytes[start], |&(e, _)| e)
                .is_err()
            {
                continue;
            }
            let mut cur = 0usize;
            for &b in &bytes[start..] {
                let node = &self.nodes[cur];
                match node.edges.binary_search_by_key(&b, |&(e, _)| e) {
                    Ok(i) => cur = node.edges[i].1 as usize,
                    Err(_) => break,
                }
                if let Some(id) = self.nodes[cur].token {
                    found(id);
                }
            }
        }
    }
}
