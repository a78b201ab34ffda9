// The scalar type of kernels written once for f32 and f16 (`fma.wgsl`): f32 here.
alias real = f32;
