//! Every shader variant, validated by naga without a GPU: parsed, validated, specialised with
//! its override constants, and checked against the binding layout the host creates for it.

use kiln::kernels::{Kernel, Slot};
use naga::valid::{Capabilities, ValidationFlags, Validator};
use std::collections::HashMap;

/// The capabilities a WebGPU device has (unpack2x16float is core WGSL), plus native f16 for
/// the variants that need SHADER_F16.
fn validator(f16: bool) -> Validator {
    let mut caps = Capabilities::SHADER_FLOAT16_IN_FLOAT32;
    if f16 {
        caps |= Capabilities::SHADER_FLOAT16;
    }
    Validator::new(ValidationFlags::all(), caps)
}

/// The (binding -> kind) the shader declares, from naga's reflection.
fn declared(module: &naga::Module) -> Vec<(u32, Slot)> {
    let mut out: Vec<(u32, Slot)> = module
        .global_variables
        .iter()
        .filter_map(|(_, g)| {
            let b = g.binding.as_ref()?;
            assert_eq!(b.group, 0, "kiln uses one bind group");
            let slot = match g.space {
                naga::AddressSpace::Uniform => Slot::Uniform,
                naga::AddressSpace::Storage { access }
                    if access.contains(naga::StorageAccess::STORE) =>
                {
                    Slot::Write
                }
                naga::AddressSpace::Storage { .. } => Slot::Read,
                other => panic!("unexpected address space {other:?}"),
            };
            Some((b.binding, slot))
        })
        .collect();
    out.sort_by_key(|(b, _)| *b);
    out
}

#[test]
fn every_shader_variant_validates_and_matches_its_layout() {
    let variants = Kernel::variants();
    // Each distinct source is parsed and validated once, then specialised per variant.
    let mut parsed: HashMap<String, (naga::Module, naga::valid::ModuleInfo)> = HashMap::new();
    let mut families = std::collections::BTreeSet::new();
    for kernel in &variants {
        let source = kernel.source();
        let f16 = kernel.needs_f16();
        let (module, info) = parsed.entry(source.clone()).or_insert_with(|| {
            let module = naga::front::wgsl::parse_str(&source).unwrap_or_else(|e| {
                panic!("{kernel:?} does not parse:\n{}", e.emit_to_string(&source))
            });
            let info = validator(f16).validate(&module).unwrap_or_else(|e| {
                panic!(
                    "{kernel:?} does not validate:\n{}",
                    e.emit_to_string(&source)
                )
            });
            (module, info)
        });
        let want: Vec<(u32, Slot)> = kernel
            .bindings()
            .iter()
            .enumerate()
            .map(|(i, s)| (i as u32, *s))
            .collect();

        let mut constants = naga::back::PipelineConstants::default();
        for (name, value) in kernel.constants() {
            assert!(
                module
                    .overrides
                    .iter()
                    .any(|(_, o)| o.name.as_deref() == Some(name)),
                "{kernel:?}: the host sets override {name}, which the shader does not declare"
            );
            constants.insert(name.to_string(), value);
        }
        let stage = (naga::ShaderStage::Compute, kernel.entry());
        let (special, _) = naga::back::pipeline_constants::process_overrides(
            module,
            info,
            Some(stage),
            &constants,
        )
        .unwrap_or_else(|e| panic!("{kernel:?} fails to specialise: {e:?}"));
        // After specialisation the module holds only the entry point's own bindings.
        let got = declared(&special);
        for (b, slot) in &got {
            assert_eq!(
                want.get(*b as usize),
                Some(&(*b, *slot)),
                "{kernel:?}: binding {b} is not in the host layout {want:?}"
            );
        }
        families.insert(
            format!("{kernel:?}")
                .split([' ', '{'])
                .next()
                .unwrap_or_default()
                .to_string(),
        );
    }
    assert_eq!(
        families.len(),
        11,
        "every kernel family is covered: {families:?}"
    );
    eprintln!(
        "{} variants from {} distinct sources validated",
        variants.len(),
        parsed.len()
    );
}

#[test]
fn a_broken_shader_is_caught_without_a_gpu() {
    // The check above must be able to fail: a reader snippet with a type error does not validate.
    let broken = Kernel::Softmax
        .source()
        .replace("exp(x[base + i] - m) * inv", "exp(x[base + i] - m) * 1u");
    let module = naga::front::wgsl::parse_str(&broken);
    let valid = module
        .map(|m| validator(false).validate(&m).is_ok())
        .unwrap_or(false);
    assert!(!valid, "a type error must be rejected");
}
