//! Where the kernel keeps the structure members the programs read, from its
//! BTF (/sys/kernel/btf/vmlinux).
//!
//! aya-ebpf has no CO-RE relocations for Rust programs, so instead of
//! compiling offsets in, user space looks them up here and hands them to the
//! programs as a read-only global ([`KernelLayout`]). Only what that needs is
//! parsed: struct and union members (anonymous ones are searched through, as
//! C lets their members be named directly), the modifiers in between, and
//! enum values.

use std::{collections::HashMap, fs, path::Path};

use islander_common::KernelLayout;

use super::{EbpfError, Result};

const VMLINUX: &str = "/sys/kernel/btf/vmlinux";
const MAGIC: u16 = 0xeb9f;

// BTF kinds (include/uapi/linux/btf.h).
const INT: u32 = 1;
const PTR: u32 = 2;
const ARRAY: u32 = 3;
const STRUCT: u32 = 4;
const UNION: u32 = 5;
const ENUM: u32 = 6;
const TYPEDEF: u32 = 8;
const VOLATILE: u32 = 9;
const CONST: u32 = 10;
const RESTRICT: u32 = 11;
const FUNC_PROTO: u32 = 13;
const VAR: u32 = 14;
const DATASEC: u32 = 15;
const DECL_TAG: u32 = 17;
const TYPE_TAG: u32 = 18;
const ENUM64: u32 = 19;

/// The kernel's layout of everything the programs read.
pub(super) fn kernel_layout() -> Result<KernelLayout> {
    let data = fs::read(VMLINUX).map_err(|error| EbpfError::Unavailable {
        reason: format!("reading {VMLINUX}: {error}"),
    })?;
    let btf = Btf::parse(&data).map_err(|reason| EbpfError::BadBtf(reason.to_owned()))?;
    btf.layout()
}

struct Member {
    name: u32,
    ty: u32,
    bit_offset: u32,
}

struct Type {
    kind: u32,
    name: u32,
    /// Size for ints, structs, unions and enums; the referred type for
    /// pointers, typedefs and modifiers.
    size_or_type: u32,
    members: Vec<Member>,
    /// For enums: (name, value).
    values: Vec<(u32, i64)>,
}

struct Btf<'a> {
    /// Index = type id; id 0 is `void`.
    types: Vec<Type>,
    strings: &'a [u8],
    /// Struct and union ids by name (the first definition wins).
    aggregates: HashMap<&'a str, u32>,
}

fn u32_at(data: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(data.get(at..at + 4)?.try_into().ok()?))
}

impl<'a> Btf<'a> {
    fn parse(data: &'a [u8]) -> Result<Self, &'static str> {
        let magic = data.get(0..2).ok_or("shorter than its header")?;
        if u16::from_le_bytes([magic[0], magic[1]]) != MAGIC {
            return Err("not little-endian BTF (bad magic)");
        }
        let field = |at| u32_at(data, at).ok_or("shorter than its header");
        let header_len = field(4)? as usize;
        let (type_off, type_len) = (field(8)? as usize, field(12)? as usize);
        let (str_off, str_len) = (field(16)? as usize, field(20)? as usize);
        let types_data = data
            .get(header_len + type_off..header_len + type_off + type_len)
            .ok_or("type section out of bounds")?;
        let strings = data
            .get(header_len + str_off..header_len + str_off + str_len)
            .ok_or("string section out of bounds")?;

        let mut btf = Btf {
            types: vec![Type {
                kind: 0,
                name: 0,
                size_or_type: 0,
                members: Vec::new(),
                values: Vec::new(),
            }],
            strings,
            aggregates: HashMap::new(),
        };
        let mut at = 0;
        let word = |at: usize| u32_at(types_data, at).ok_or("truncated type");
        while at < types_data.len() {
            let (name, info, size_or_type) = (word(at)?, word(at + 4)?, word(at + 8)?);
            at += 12;
            let kind = (info >> 24) & 0x1f;
            let vlen = (info & 0xffff) as usize;
            let bitfield_offsets = info >> 31 == 1;
            let mut ty = Type {
                kind,
                name,
                size_or_type,
                members: Vec::new(),
                values: Vec::new(),
            };
            match kind {
                INT | VAR | DECL_TAG => at += 4,
                ARRAY => at += 12,
                STRUCT | UNION => {
                    for i in 0..vlen {
                        let base = at + 12 * i;
                        let offset = word(base + 8)?;
                        ty.members.push(Member {
                            name: word(base)?,
                            ty: word(base + 4)?,
                            // With the kind flag, the top 8 bits are a
                            // bitfield's size and the rest its offset.
                            bit_offset: if bitfield_offsets {
                                offset & 0xff_ffff
                            } else {
                                offset
                            },
                        });
                    }
                    at += 12 * vlen;
                }
                ENUM => {
                    for i in 0..vlen {
                        let base = at + 8 * i;
                        ty.values
                            .push((word(base)?, i64::from(word(base + 4)? as i32)));
                    }
                    at += 8 * vlen;
                }
                ENUM64 => {
                    for i in 0..vlen {
                        let base = at + 12 * i;
                        let value = u64::from(word(base + 4)?) | u64::from(word(base + 8)?) << 32;
                        ty.values.push((word(base)?, value as i64));
                    }
                    at += 12 * vlen;
                }
                FUNC_PROTO => at += 8 * vlen,
                DATASEC => at += 12 * vlen,
                // PTR, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC, FLOAT,
                // TYPE_TAG carry nothing past the common header.
                0..=19 => {}
                _ => return Err("unknown type kind"),
            }
            let id = btf.types.len() as u32;
            if matches!(kind, STRUCT | UNION) && name != 0 {
                let name = btf.name(name);
                btf.aggregates.entry(name).or_insert(id);
            }
            btf.types.push(ty);
        }
        Ok(btf)
    }

    fn name(&self, offset: u32) -> &'a str {
        let rest = self.strings.get(offset as usize..).unwrap_or_default();
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        std::str::from_utf8(&rest[..end]).unwrap_or_default()
    }

    /// Follows typedefs and qualifiers to the type they stand for.
    fn resolve(&self, mut id: u32) -> Option<&Type> {
        for _ in 0..32 {
            let ty = self.types.get(id as usize)?;
            match ty.kind {
                TYPEDEF | VOLATILE | CONST | RESTRICT | TYPE_TAG => id = ty.size_or_type,
                _ => return Some(ty),
            }
        }
        None
    }

    /// Bit offset and type of `name` in the struct or union `ty`, looking
    /// through anonymous members.
    fn find(&self, ty: &Type, name: &str) -> Option<(u32, u32)> {
        for member in &ty.members {
            if member.name != 0 {
                if self.name(member.name) == name {
                    return Some((member.bit_offset, member.ty));
                }
                continue;
            }
            let Some(inner) = self.resolve(member.ty) else {
                continue;
            };
            if matches!(inner.kind, STRUCT | UNION) {
                if let Some((offset, found)) = self.find(inner, name) {
                    return Some((member.bit_offset + offset, found));
                }
            }
        }
        None
    }

    /// Byte offset of `path` (members separated by dots) in struct
    /// `aggregate`, whose last member must be `size` bytes.
    fn offset(&self, aggregate: &str, path: &str, size: u32) -> Result<u32> {
        let missing = |what: String| EbpfError::KernelLayout {
            member: format!("{aggregate}.{path}"),
            problem: what,
        };
        let mut ty = self
            .aggregates
            .get(aggregate)
            .and_then(|&id| self.types.get(id as usize))
            .ok_or_else(|| missing(format!("the kernel's BTF has no struct {aggregate}")))?;
        let mut bits = 0;
        let mut last = 0;
        for part in path.split('.') {
            let (offset, member_ty) = self
                .find(ty, part)
                .ok_or_else(|| missing(format!("no member {part}")))?;
            bits += offset;
            last = member_ty;
            if let Some(inner) = self.resolve(member_ty) {
                ty = inner;
            }
        }
        if bits % 8 != 0 {
            return Err(missing("it is a bitfield".into()));
        }
        let found = self.size(last);
        if found != Some(size) {
            return Err(missing(format!(
                "it is {} bytes, not {size}",
                found.map_or_else(|| "an unknown number of".to_owned(), |s| s.to_string())
            )));
        }
        Ok(bits / 8)
    }

    fn size(&self, id: u32) -> Option<u32> {
        let ty = self.resolve(id)?;
        match ty.kind {
            INT | STRUCT | UNION | ENUM | ENUM64 => Some(ty.size_or_type),
            PTR => Some(8),
            _ => None,
        }
    }

    fn enum_value(&self, enumeration: &str, variant: &str) -> Result<u32> {
        self.types
            .iter()
            .filter(|ty| matches!(ty.kind, ENUM | ENUM64) && self.name(ty.name) == enumeration)
            .flat_map(|ty| &ty.values)
            .find(|(name, _)| self.name(*name) == variant)
            .and_then(|&(_, value)| u32::try_from(value).ok())
            .ok_or_else(|| EbpfError::KernelLayout {
                member: format!("enum {enumeration}"),
                problem: format!("no value {variant}"),
            })
    }

    fn layout(&self) -> Result<KernelLayout> {
        const PTR: u32 = 8;
        Ok(KernelLayout {
            resolved: 1,
            task_cgroups: self.offset("task_struct", "cgroups", PTR)?,
            css_set_dfl_cgrp: self.offset("css_set", "dfl_cgrp", PTR)?,
            cgroup_kn: self.offset("cgroup", "kn", PTR)?,
            kernfs_node_id: self.offset("kernfs_node", "id", 8)?,
            folio_flags: self.offset("folio", "flags", 8)?,
            folio_flags_1: self.offset("folio", "_flags_1", 8)?,
            mapping_host: self.offset("address_space", "host", PTR)?,
            inode_sb: self.offset("inode", "i_sb", PTR)?,
            sb_dev: self.offset("super_block", "s_dev", 4)?,
            bio_opf: self.offset("bio", "bi_opf", 4)?,
            bio_size: self.offset("bio", "bi_iter.bi_size", 4)?,
            bio_bdev: self.offset("bio", "bi_bdev", PTR)?,
            bdev_dev: self.offset("block_device", "bd_dev", 4)?,
            bio_io_vec: self.offset("bio", "bi_io_vec", PTR)?,
            bvec_page: self.offset("bio_vec", "bv_page", PTR)?,
            page_flags: self.offset("page", "flags", 8)?,
            page_compound_head: self.offset("page", "compound_head", 8)?,
            pg_head: self.enum_value("pageflags", "PG_head")?,
            pg_writeback: self.enum_value("pageflags", "PG_writeback")?,
        })
    }
}

/// Whether the kernel describes itself in BTF, which every program here needs.
pub(super) fn available() -> bool {
    Path::new(VMLINUX).is_file()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a tiny BTF blob: int (id 1), ptr to it (2), an anonymous
    /// struct holding `inner` (3), struct `outer` with `a` and the anonymous
    /// member (4), and enum `flags` (5).
    fn sample() -> Vec<u8> {
        let strings = b"\0int\0inner\0outer\0a\0flags\0F_ONE\0";
        let name = |s: &str| {
            let needle = format!("\0{s}\0");
            strings
                .windows(needle.len())
                .position(|w| w == needle.as_bytes())
                .unwrap() as u32
                + 1
        };
        let mut types = Vec::new();
        let mut push = |words: &[u32]| {
            for w in words {
                types.extend_from_slice(&w.to_le_bytes());
            }
        };
        push(&[name("int"), INT << 24, 4, 32]);
        push(&[0, PTR << 24, 1]);
        push(&[0, STRUCT << 24 | 1, 8, name("inner"), 2, 0]);
        push(&[
            name("outer"),
            STRUCT << 24 | 2,
            16,
            name("a"),
            1,
            0,
            0,
            3,
            64,
        ]);
        push(&[name("flags"), ENUM << 24 | 1, 4, name("F_ONE"), 6]);
        let mut data = Vec::new();
        for w in [
            u32::from(MAGIC) | 1 << 16,
            24,
            0,
            types.len() as u32,
            types.len() as u32,
            strings.len() as u32,
        ] {
            data.extend_from_slice(&w.to_le_bytes());
        }
        data.extend_from_slice(&types);
        data.extend_from_slice(strings);
        data
    }

    #[test]
    fn finds_members_through_anonymous_structs() {
        let data = sample();
        let btf = Btf::parse(&data).unwrap();
        assert_eq!(btf.offset("outer", "a", 4).unwrap(), 0);
        assert_eq!(btf.offset("outer", "inner", 8).unwrap(), 8);
        assert_eq!(btf.enum_value("flags", "F_ONE").unwrap(), 6);
    }

    #[test]
    fn names_what_is_missing_or_mis_sized() {
        let data = sample();
        let btf = Btf::parse(&data).unwrap();
        let err = btf.offset("outer", "b", 4).unwrap_err().to_string();
        assert!(
            err.contains("outer.b") && err.contains("no member b"),
            "{err}"
        );
        let err = btf.offset("outer", "a", 8).unwrap_err().to_string();
        assert!(err.contains("4 bytes, not 8"), "{err}");
        let err = btf.offset("nope", "a", 4).unwrap_err().to_string();
        assert!(err.contains("no struct nope"), "{err}");
    }

    #[test]
    fn rejects_what_is_not_btf() {
        assert!(Btf::parse(b"\x7fELF not btf at all here....").is_err());
        assert!(Btf::parse(b"").is_err());
    }

    #[test]
    fn reads_this_kernel() {
        if !available() {
            return;
        }
        let layout = kernel_layout().unwrap();
        assert_eq!(layout.resolved, 1);
        assert!(layout.pg_writeback < 64 && layout.pg_head < 64);
    }
}
