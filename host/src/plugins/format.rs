//! The plugin file format: a WebAssembly component with the manifest JSON in
//! a custom section named [`MANIFEST_SECTION`].
//!
//! A component is an 8-byte preamble (`\0asm`, version `0x0d 0x00`, layer
//! `0x01 0x00`) followed by sections, each `id (1 byte) · size (LEB128 u32) ·
//! payload`. A custom section has id 0 and a payload of `name length (LEB128
//! u32) · name · data`. Custom sections may stand anywhere and carry no
//! semantics for the runtime, so appending one leaves the component as it was.
//! Only the top level is read: a manifest inside a nested component is not the
//! plugin's.

use super::PluginError;

/// The custom section that holds the manifest JSON.
pub const MANIFEST_SECTION: &str = "pdpp-manifest";

const MAGIC: &[u8; 4] = b"\0asm";
const CUSTOM: u8 = 0;

/// What the preamble says the bytes are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Component,
    CoreModule,
}

/// Classify bytes by their preamble; anything else is [`PluginError::NotWasm`].
pub fn kind(bytes: &[u8]) -> Result<Kind, PluginError> {
    if bytes.len() < 8 || &bytes[..4] != MAGIC {
        return Err(PluginError::NotWasm(
            "the file does not start with the WebAssembly magic number".into(),
        ));
    }
    match u16::from_le_bytes([bytes[6], bytes[7]]) {
        0 => Ok(Kind::CoreModule),
        1 => Ok(Kind::Component),
        layer => Err(PluginError::NotWasm(format!("unknown WebAssembly layer {layer}"))),
    }
}

/// Classify, and refuse a core module: a plugin must be a component.
pub fn require_component(bytes: &[u8]) -> Result<(), PluginError> {
    match kind(bytes)? {
        Kind::Component => Ok(()),
        Kind::CoreModule => Err(PluginError::WrongWorld(
            "this is a core WebAssembly module, not a component: build the connector with \
             `--target wasm32-wasip2`"
                .into(),
        )),
    }
}

/// One top-level section: where it lies in the file and its payload.
struct Section<'a> {
    id: u8,
    whole: std::ops::Range<usize>,
    payload: &'a [u8],
}

fn read_leb_u32(bytes: &[u8], pos: &mut usize) -> Option<u32> {
    let mut result: u64 = 0;
    for i in 0..5 {
        let b = *bytes.get(*pos)?;
        *pos += 1;
        result |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return u32::try_from(result).ok();
        }
    }
    None
}

fn write_leb_u32(out: &mut Vec<u8>, mut v: u32) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// The top-level sections after the preamble.
fn sections(bytes: &[u8]) -> Result<Vec<Section<'_>>, PluginError> {
    let malformed = |at: usize, what: &str| PluginError::NotWasm(format!("malformed section at byte {at}: {what}"));
    let mut out = Vec::new();
    let mut pos = 8;
    while pos < bytes.len() {
        let start = pos;
        let id = bytes[pos];
        pos += 1;
        let size = read_leb_u32(bytes, &mut pos).ok_or_else(|| malformed(start, "bad size"))? as usize;
        let end = pos
            .checked_add(size)
            .filter(|&e| e <= bytes.len())
            .ok_or_else(|| malformed(start, "runs past the end of the file"))?;
        out.push(Section {
            id,
            whole: start..end,
            payload: &bytes[pos..end],
        });
        pos = end;
    }
    Ok(out)
}

/// A custom section's name and data.
fn custom(payload: &[u8]) -> Option<(&str, &[u8])> {
    let mut pos = 0;
    let len = read_leb_u32(payload, &mut pos)? as usize;
    let name = payload.get(pos..pos.checked_add(len)?)?;
    Some((std::str::from_utf8(name).ok()?, &payload[pos + len..]))
}

fn is_manifest(s: &Section<'_>) -> bool {
    s.id == CUSTOM && custom(s.payload).is_some_and(|(name, _)| name == MANIFEST_SECTION)
}

/// The embedded manifest bytes, if the component has them. Two manifest
/// sections are an error: which one would be the consent surface?
pub fn embedded_manifest(bytes: &[u8]) -> Result<Option<&[u8]>, PluginError> {
    require_component(bytes)?;
    let mut found = None;
    for s in sections(bytes)?.iter().filter(|s| is_manifest(s)) {
        if found.is_some() {
            return Err(PluginError::BadManifest {
                rule: "manifest_section_unique",
                message: format!("the component has more than one `{MANIFEST_SECTION}` section"),
            });
        }
        found = custom(s.payload).map(|(_, data)| data);
    }
    Ok(found)
}

/// One custom section, encoded.
pub fn custom_section(name: &str, data: &[u8]) -> Result<Vec<u8>, PluginError> {
    let too_big = || PluginError::BadManifest {
        rule: "manifest_size",
        message: "the manifest does not fit in a WebAssembly section".into(),
    };
    let name_len = u32::try_from(name.len()).map_err(|_| too_big())?;
    let mut payload = Vec::with_capacity(name.len() + data.len() + 5);
    write_leb_u32(&mut payload, name_len);
    payload.extend_from_slice(name.as_bytes());
    payload.extend_from_slice(data);
    let size = u32::try_from(payload.len()).map_err(|_| too_big())?;
    let mut out = Vec::with_capacity(payload.len() + 6);
    out.push(CUSTOM);
    write_leb_u32(&mut out, size);
    out.extend_from_slice(&payload);
    Ok(out)
}

/// The component with `manifest` as its only manifest section (appended at
/// the end; any earlier manifest section is dropped).
pub fn embed_manifest(wasm: &[u8], manifest: &[u8]) -> Result<Vec<u8>, PluginError> {
    require_component(wasm)?;
    let mut out = Vec::with_capacity(wasm.len() + manifest.len() + 32);
    out.extend_from_slice(&wasm[..8]);
    for s in sections(wasm)?.iter().filter(|s| !is_manifest(s)) {
        out.extend_from_slice(&wasm[s.whole.clone()]);
    }
    out.extend_from_slice(&custom_section(MANIFEST_SECTION, manifest)?);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY_COMPONENT: &[u8] = b"\0asm\x0d\x00\x01\x00";

    #[test]
    fn leb128_round_trips_at_the_byte_boundaries() {
        for v in [0u32, 1, 127, 128, 255, 16_383, 16_384, 1 << 21, u32::MAX] {
            let mut buf = Vec::new();
            write_leb_u32(&mut buf, v);
            let mut pos = 0;
            assert_eq!(read_leb_u32(&buf, &mut pos), Some(v));
            assert_eq!(pos, buf.len());
        }
        // Six continuation bytes: not a u32.
        assert_eq!(read_leb_u32(&[0x80; 6], &mut 0), None);
    }

    #[test]
    fn embedding_replaces_an_earlier_manifest_and_keeps_other_sections() {
        let mut wasm = EMPTY_COMPONENT.to_vec();
        wasm.extend(custom_section("name", b"keep me").unwrap());
        let once = embed_manifest(&wasm, b"{\"a\":1}").unwrap();
        let twice = embed_manifest(&once, b"{\"a\":2}").unwrap();
        assert_eq!(embedded_manifest(&twice).unwrap(), Some(&b"{\"a\":2}"[..]));
        assert!(twice.windows(7).any(|w| w == b"keep me"));
        assert_eq!(embedded_manifest(EMPTY_COMPONENT).unwrap(), None);
    }

    #[test]
    fn two_manifest_sections_and_truncated_sections_are_refused() {
        let mut wasm = embed_manifest(EMPTY_COMPONENT, b"{}").unwrap();
        wasm.extend(custom_section(MANIFEST_SECTION, b"{}").unwrap());
        assert!(matches!(
            embedded_manifest(&wasm),
            Err(PluginError::BadManifest {
                rule: "manifest_section_unique",
                ..
            })
        ));
        let cut = &wasm[..wasm.len() - 1];
        assert!(matches!(embedded_manifest(cut), Err(PluginError::NotWasm(_))));
        assert!(matches!(kind(b"\0asm\x01\x00\x00\x00"), Ok(Kind::CoreModule)));
        assert!(matches!(kind(b"{\"json\": 1}"), Err(PluginError::NotWasm(_))));
    }
}
