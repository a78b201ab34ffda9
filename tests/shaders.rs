//! Every shader variant, validated by naga without a GPU: parsed, validated, specialised with
//! its override constants, and checked against the binding layout the host creates for it.
//! Every struct a kernel shares with the host (its `Params`, the step's `Seq`, the sampler's
//! `Sampling`) is read from naga's IR and compared with the Rust struct, member by member.

use kiln::kernels::{Family, Kernel, Layout, Slot};
use naga::valid::{Capabilities, ValidationFlags, Validator};
use std::collections::HashMap;

/// The capabilities a WebGPU device has (unpack2x16float is core WGSL), plus native f16 for
/// the variants that need SHADER_F16 and subgroups in compute for those that need SUBGROUP.
fn validator(kernel: &Kernel) -> Validator {
    let mut caps = Capabilities::SHADER_FLOAT16_IN_FLOAT32;
    if kernel.needs_f16() {
        caps |= Capabilities::SHADER_FLOAT16;
    }
    if kernel.needs_subgroups() {
        caps |= Capabilities::SUBGROUP;
    }
    let mut v = Validator::new(ValidationFlags::all(), caps);
    if kernel.needs_subgroups() {
        v.subgroup_stages(naga::valid::ShaderStages::COMPUTE)
            .subgroup_operations(naga::valid::SubgroupOperationSet::all());
    }
    v
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
    let variants = kiln::ops::variants();
    // Each distinct source is parsed and validated once, then specialised per variant.
    let mut parsed: HashMap<String, (naga::Module, naga::valid::ModuleInfo)> = HashMap::new();
    let mut families = std::collections::BTreeSet::new();
    for kernel in &variants {
        let source = kernel.source();
        let (module, info) = parsed.entry(source.clone()).or_insert_with(|| {
            let module = naga::front::wgsl::parse_str(&source).unwrap_or_else(|e| {
                panic!("{kernel:?} does not parse:\n{}", e.emit_to_string(&source))
            });
            let info = validator(kernel).validate(&module).unwrap_or_else(|e| {
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
        families.insert(kernel.name());
    }
    let registered: Vec<&str> = kiln::ops::families().iter().map(|f| f.name).collect();
    let mut unique = registered.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique.len(),
        registered.len(),
        "family names are unique: {registered:?}"
    );
    assert_eq!(
        families.len(),
        registered.len(),
        "every family has variants: {families:?}"
    );
    eprintln!(
        "{} variants from {} distinct sources validated",
        variants.len(),
        parsed.len()
    );
}

/// The WGSL scalar name of a naga type, if it is a 32-bit scalar.
fn scalar(module: &naga::Module, ty: naga::Handle<naga::Type>) -> Option<&'static str> {
    match module.types[ty].inner {
        naga::TypeInner::Scalar(naga::Scalar { kind, width: 4 }) => Some(match kind {
            naga::ScalarKind::Uint => "u32",
            naga::ScalarKind::Sint => "i32",
            naga::ScalarKind::Float => "f32",
            _ => return None,
        }),
        _ => None,
    }
}

/// Compare the WGSL struct `layout.wgsl` of `module` with the Rust layout.
fn matches(module: &naga::Module, layout: &Layout) -> Result<(), String> {
    let (members, span) = module
        .types
        .iter()
        .find_map(|(_, t)| match (&t.name, &t.inner) {
            (Some(n), naga::TypeInner::Struct { members, span }) if n == layout.wgsl => {
                Some((members, *span))
            }
            _ => None,
        })
        .ok_or_else(|| format!("no struct {} in the shader", layout.wgsl))?;
    let wgsl: Vec<(String, u32, Option<&str>)> = members
        .iter()
        .map(|m| {
            (
                m.name.clone().unwrap_or_default(),
                m.offset,
                scalar(module, m.ty),
            )
        })
        .collect();
    let rust: Vec<(String, u32, Option<&str>)> = layout
        .fields
        .iter()
        .map(|f| (f.name.to_string(), f.offset as u32, Some(f.scalar)))
        .collect();
    if wgsl != rust {
        return Err(format!(
            "struct {}: WGSL {wgsl:?} but Rust {rust:?}",
            layout.wgsl
        ));
    }
    if span as usize != layout.size {
        return Err(format!(
            "struct {}: WGSL size {span} but Rust {}",
            layout.wgsl, layout.size
        ));
    }
    Ok(())
}

/// The module of a family's first variant.
fn module_of(family: &Family) -> naga::Module {
    let kernel = kiln::ops::variants()
        .into_iter()
        .find(|k| std::ptr::eq(k.family, family))
        .expect("a variant");
    naga::front::wgsl::parse_str(&kernel.source()).expect("parses")
}

#[test]
fn every_shared_struct_matches_its_rust_twin() {
    let mut checked = 0;
    for family in kiln::ops::families() {
        assert!(
            family.structs.first().is_some_and(|l| l.wgsl == "Params"),
            "{}: a family declares its Params first",
            family.name
        );
        let module = module_of(family);
        for layout in family.structs {
            if let Err(e) = matches(&module, layout) {
                panic!("{}: {e}", family.name);
            }
            checked += 1;
        }
    }
    eprintln!("{checked} structs checked");
}

#[test]
fn a_layout_drift_is_caught() {
    // The check above must be able to fail: attention's Params with two fields swapped.
    let family = &kiln::ops::attention::FAMILY;
    let module = module_of(family);
    let good = family.structs[0];
    let mut fields = good.fields.to_vec();
    fields.swap(0, 1);
    let swapped = Layout {
        fields: Box::leak(fields.into_boxed_slice()),
        ..good
    };
    assert!(matches(&module, &good).is_ok());
    assert!(
        matches(&module, &swapped).is_err(),
        "a swapped field must be caught"
    );
    let short = Layout {
        size: good.size - 4,
        ..good
    };
    assert!(
        matches(&module, &short).is_err(),
        "a size mismatch must be caught"
    );
}

#[test]
fn a_broken_shader_is_caught_without_a_gpu() {
    // The check above must be able to fail: a reader snippet with a type error does not validate.
    let kernel = Kernel::new(&kiln::ops::softmax::FAMILY);
    let broken = kernel
        .source()
        .replace("exp(x[base + i] - m) * inv", "exp(x[base + i] - m) * 1u");
    let module = naga::front::wgsl::parse_str(&broken);
    let valid = module
        .map(|m| validator(&kernel).validate(&m).is_ok())
        .unwrap_or(false);
    assert!(!valid, "a type error must be rejected");
}

/// The value of `const NAME: u32` in `module`.
fn const_u32(module: &naga::Module, name: &str) -> u32 {
    let (_, c) = module
        .constants
        .iter()
        .find(|(_, c)| c.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("a const {name}"));
    match module.global_expressions[c.init] {
        naga::Expression::Literal(naga::Literal::U32(v)) => v,
        ref other => panic!("{name} is {other:?}"),
    }
}

/// The CPU GEMM's rows of threads are a const in its shader (workgroup arrays read by an
/// include are sized by it); the host sizes its grid by GEMM_COLUMNS_TY.
#[test]
fn the_cpu_gemm_rows_of_threads_match_the_host() {
    use kiln::ops::matmul::{GEMM_COLUMNS, GEMM_COLUMNS_TY};
    assert_eq!(const_u32(&module_of(&GEMM_COLUMNS), "TY"), GEMM_COLUMNS_TY);
}

/// The GEMV's lane sums in workgroup memory have room for a const number of threads
/// (lanes_shared.wgsl); the host keeps every GEMV workgroup within GEMV_MAX_THREADS.
#[test]
fn the_gemv_lane_sums_have_room_for_every_workgroup() {
    let module = module_of(&kiln::ops::matmul::GEMV);
    assert_eq!(
        const_u32(&module, "LANE_SLOTS"),
        kiln::kernels::GEMV_MAX_THREADS
    );
}
