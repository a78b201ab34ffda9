//! Typed uniform and storage structs shared with WGSL.
//!
//! A kernel's parameters are a `#[repr(C)]` struct declared with [`gpu_struct!`], which also
//! records each field's name, offset and scalar type. `tests/shaders.rs` reads the WGSL struct
//! of the same name through naga and compares the two, so a layout that drifts fails a test
//! instead of computing garbage.

/// A field of a struct shared with WGSL.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Field {
    /// The field's name, the same in Rust and WGSL.
    pub name: &'static str,
    /// Its byte offset in the struct.
    pub offset: usize,
    /// The WGSL scalar type: "u32", "i32" or "f32".
    pub scalar: &'static str,
}

/// The layout of a struct shared with WGSL.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Layout {
    /// The struct's name in WGSL.
    pub wgsl: &'static str,
    /// The struct's size in bytes.
    pub size: usize,
    /// Its fields, in declaration order.
    pub fields: &'static [Field],
}

/// A plain-data struct with a WGSL twin.
pub trait GpuStruct: bytemuck::Pod {
    /// The struct's layout, checked against its WGSL twin.
    const LAYOUT: Layout;
}

/// Scalars a [`GpuStruct`] field may have.
pub trait Scalar {
    /// The scalar's name in WGSL.
    const WGSL: &'static str;
}

impl Scalar for u32 {
    const WGSL: &'static str = "u32";
}
impl Scalar for i32 {
    const WGSL: &'static str = "i32";
}
impl Scalar for f32 {
    const WGSL: &'static str = "f32";
}

/// Declare a `#[repr(C)]` struct of 32-bit scalars that WGSL declares as `struct $wgsl`,
/// together with its [`Layout`].
macro_rules! gpu_struct {
    ($(#[$meta:meta])* $vis:vis struct $name:ident($wgsl:literal) {
        $($(#[$fmeta:meta])* $field:ident: $ty:ty),* $(,)?
    }) => {
        $(#[$meta])*
        #[repr(C)]
        #[derive(Copy, Clone, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
        $vis struct $name {
            $($(#[$fmeta])* pub $field: $ty),*
        }

        impl $crate::kernels::GpuStruct for $name {
            const LAYOUT: $crate::kernels::Layout = $crate::kernels::Layout {
                wgsl: $wgsl,
                size: ::std::mem::size_of::<$name>(),
                fields: &[$($crate::kernels::Field {
                    name: stringify!($field),
                    offset: ::std::mem::offset_of!($name, $field),
                    scalar: <$ty as $crate::kernels::Scalar>::WGSL,
                }),*],
            };
        }
    };
}

pub(crate) use gpu_struct;
