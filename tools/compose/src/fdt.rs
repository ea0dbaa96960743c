//! A small flattened-device-tree (DTB) writer: header, memory reservation
//! map, structure block and strings block, as the Devicetree Specification
//! v0.4 §5 lays them out (format version 17, last compatible 16).
//!
//! ```
//! use bulkhead_compose::fdt::Node;
//! let mut root = Node::new("");
//! root.prop_u32("#address-cells", 2).prop_str("model", "demo");
//! let dtb = root.to_dtb(&[], 0);
//! assert_eq!(&dtb[..4], &[0xd0, 0x0d, 0xfe, 0xed]);
//! assert_eq!(dtb.len() % 4, 0);
//! ```
//!
//! Property names are stored once in the strings block (deduplicated in
//! first-use order) and nodes and properties are written in insertion order,
//! so the same tree always gives the same bytes.

/// `FDT_MAGIC`.
pub const MAGIC: u32 = 0xd00d_feed;
/// Format version written.
pub const VERSION: u32 = 17;
/// Oldest version this output is compatible with.
pub const LAST_COMP_VERSION: u32 = 16;
const HEADER_LEN: usize = 40;
const BEGIN_NODE: u32 = 1;
const END_NODE: u32 = 2;
const PROP: u32 = 3;
const END: u32 = 9;

/// One node of the tree under construction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    name: String,
    props: Vec<(String, Vec<u8>)>,
    children: Vec<Node>,
}

impl Node {
    /// A node named `name` (`""` for the root, `name@unit` for others).
    pub fn new(name: &str) -> Node {
        Node {
            name: name.into(),
            props: Vec::new(),
            children: Vec::new(),
        }
    }

    /// Adds a property with raw bytes.
    pub fn prop_bytes(&mut self, name: &str, value: &[u8]) -> &mut Self {
        self.props.push((name.into(), value.to_vec()));
        self
    }

    /// Adds an empty (boolean) property.
    pub fn prop_empty(&mut self, name: &str) -> &mut Self {
        self.prop_bytes(name, &[])
    }

    /// Adds a single big-endian cell.
    pub fn prop_u32(&mut self, name: &str, v: u32) -> &mut Self {
        self.prop_u32s(name, &[v])
    }

    /// Adds a list of big-endian cells.
    pub fn prop_u32s(&mut self, name: &str, v: &[u32]) -> &mut Self {
        let bytes: Vec<u8> = v.iter().flat_map(|c| c.to_be_bytes()).collect();
        self.prop_bytes(name, &bytes)
    }

    /// Adds a list of 64-bit values, each as two big-endian cells.
    pub fn prop_u64s(&mut self, name: &str, v: &[u64]) -> &mut Self {
        let bytes: Vec<u8> = v.iter().flat_map(|c| c.to_be_bytes()).collect();
        self.prop_bytes(name, &bytes)
    }

    /// Adds a NUL-terminated string.
    pub fn prop_str(&mut self, name: &str, v: &str) -> &mut Self {
        self.prop_strs(name, &[v])
    }

    /// Adds a string list (each NUL-terminated).
    pub fn prop_strs(&mut self, name: &str, v: &[&str]) -> &mut Self {
        let mut bytes = Vec::new();
        for s in v {
            bytes.extend_from_slice(s.as_bytes());
            bytes.push(0);
        }
        self.prop_bytes(name, &bytes)
    }

    /// Appends a child node and returns it for filling in.
    pub fn child(&mut self, node: Node) -> &mut Node {
        self.children.push(node);
        let last = self.children.len() - 1;
        &mut self.children[last]
    }

    /// The DTB: this node as the root, `reserved` as the memory reservation
    /// map, `boot_cpuid` as the boot CPU's `reg`.
    pub fn to_dtb(&self, reserved: &[(u64, u64)], boot_cpuid: u32) -> Vec<u8> {
        let mut strings: Vec<u8> = Vec::new();
        let mut structure: Vec<u8> = Vec::new();
        self.write(&mut structure, &mut strings);
        put(&mut structure, END);

        let mut rsv = Vec::new();
        for (addr, size) in reserved.iter().chain(&[(0, 0)]) {
            rsv.extend_from_slice(&addr.to_be_bytes());
            rsv.extend_from_slice(&size.to_be_bytes());
        }
        // The reservation map must be 8-aligned; the header is 40 bytes.
        let off_rsv = HEADER_LEN;
        let off_struct = off_rsv + rsv.len();
        let off_strings = off_struct + structure.len();
        let mut total = off_strings + strings.len();
        // Pad the whole blob to a multiple of 4 (strings need no alignment,
        // but some loaders copy in 4-byte units).
        let pad = total.wrapping_neg() & 3;
        total += pad;

        let mut out = Vec::with_capacity(total);
        for field in [
            MAGIC,
            cell(total),
            cell(off_struct),
            cell(off_strings),
            cell(off_rsv),
            VERSION,
            LAST_COMP_VERSION,
            boot_cpuid,
            cell(strings.len()),
            cell(structure.len()),
        ] {
            put(&mut out, field);
        }
        out.extend_from_slice(&rsv);
        out.extend_from_slice(&structure);
        out.extend_from_slice(&strings);
        out.resize(total, 0);
        out
    }

    fn write(&self, s: &mut Vec<u8>, strings: &mut Vec<u8>) {
        put(s, BEGIN_NODE);
        s.extend_from_slice(self.name.as_bytes());
        s.push(0);
        align4(s);
        for (name, value) in &self.props {
            put(s, PROP);
            put(s, cell(value.len()));
            put(s, string_offset(strings, name));
            s.extend_from_slice(value);
            align4(s);
        }
        for c in &self.children {
            c.write(s, strings);
        }
        put(s, END_NODE);
    }
}

/// A length or offset as a header cell. Device trees we build are a few
/// KiB; anything over 4 GiB saturates, which a reader then rejects.
fn cell(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn put(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn align4(out: &mut Vec<u8>) {
    while out.len() % 4 != 0 {
        out.push(0);
    }
}

/// Offset of `name` in the strings block, adding it on first use.
fn string_offset(strings: &mut Vec<u8>, name: &str) -> u32 {
    let mut at = 0;
    for s in strings.split(|&b| b == 0) {
        if s == name.as_bytes() && at < strings.len() {
            return cell(at);
        }
        at += s.len() + 1;
    }
    let off = strings.len();
    strings.extend_from_slice(name.as_bytes());
    strings.push(0);
    cell(off)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn be32(b: &[u8], at: usize) -> u32 {
        u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
    }

    #[test]
    fn header_fields_and_blocks_are_consistent() {
        let mut root = Node::new("");
        root.prop_u32("#address-cells", 2);
        root.child(Node::new("chosen")).prop_str("bootargs", "x");
        let dtb = root.to_dtb(&[(0x1000, 0x2000)], 0);
        assert_eq!(be32(&dtb, 0), MAGIC);
        assert_eq!(be32(&dtb, 4) as usize, dtb.len());
        let (off_struct, off_strings, off_rsv) = (
            be32(&dtb, 8) as usize,
            be32(&dtb, 12) as usize,
            be32(&dtb, 16) as usize,
        );
        assert_eq!(off_rsv % 8, 0);
        assert_eq!(off_struct, off_rsv + 32, "one entry plus the terminator");
        assert_eq!(off_strings, off_struct + be32(&dtb, 36) as usize);
        assert_eq!(be32(&dtb, off_struct), BEGIN_NODE);
        assert_eq!(be32(&dtb, off_strings - 4), END);
        let strings = &dtb[off_strings..off_strings + be32(&dtb, 32) as usize];
        assert_eq!(strings, b"#address-cells\0bootargs\0");
    }

    #[test]
    fn property_names_are_deduplicated() {
        let mut strings = Vec::new();
        assert_eq!(string_offset(&mut strings, "reg"), 0);
        assert_eq!(string_offset(&mut strings, "compatible"), 4);
        assert_eq!(string_offset(&mut strings, "reg"), 0);
        assert_eq!(string_offset(&mut strings, ""), 15);
        assert_eq!(string_offset(&mut strings, ""), 15);
    }
}
