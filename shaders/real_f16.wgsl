// The scalar type of kernels written once for f32 and f16 (`fma.wgsl`): f16 here.
alias real = f16;
