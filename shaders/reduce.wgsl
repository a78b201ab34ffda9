// Workgroup reductions for the row kernels (norms, softmax): every thread passes its partial
// value and gets the workgroup's total back. WG, the workgroup size, is a power of two
// declared by the including kernel. Call from uniform control flow.

var<workgroup> red: array<f32, WG>;
var<workgroup> red4: array<vec4<f32>, WG>;

fn reduce_sum(v: f32, tid: u32) -> f32 {
    red[tid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s >> 1u) {
        if (tid < s) {
            red[tid] = red[tid] + red[tid + s];
        }
        workgroupBarrier();
    }
    let total = red[0];
    workgroupBarrier();
    return total;
}

fn reduce_max(v: f32, tid: u32) -> f32 {
    red[tid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s >> 1u) {
        if (tid < s) {
            red[tid] = max(red[tid], red[tid + s]);
        }
        workgroupBarrier();
    }
    let total = red[0];
    workgroupBarrier();
    return total;
}

// reduce_sum of four values at once: each component summed exactly as reduce_sum sums it,
// behind a quarter of the barriers.
fn reduce_sum4(v: vec4<f32>, tid: u32) -> vec4<f32> {
    red4[tid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s >> 1u) {
        if (tid < s) {
            red4[tid] = red4[tid] + red4[tid + s];
        }
        workgroupBarrier();
    }
    let total = red4[0];
    workgroupBarrier();
    return total;
}
