// reduce.wgsl's workgroup reductions with subgroup shuffles first (adapters with SUBGROUP):
// each run of SG consecutive invocations, which share a subgroup since SG is at most the
// adapter's smallest subgroup (the host sets it), sums with xor shuffles and no barrier; the
// WG / SG partial results then meet in workgroup memory. Same functions, same contract:
// every thread passes its value and gets the workgroup's total back; call from uniform
// control flow.

override SG: u32 = 4u;

var<workgroup> red: array<f32, WG>;
var<workgroup> red4: array<vec4<f32>, WG>;

fn reduce_sum(v: f32, tid: u32) -> f32 {
    var s = v;
    for (var o = SG / 2u; o > 0u; o = o >> 1u) {
        s = s + subgroupShuffleXor(s, o);
    }
    if (tid % SG == 0u) {
        red[tid / SG] = s;
    }
    workgroupBarrier();
    for (var h = WG / SG / 2u; h > 0u; h = h >> 1u) {
        if (tid < h) {
            red[tid] = red[tid] + red[tid + h];
        }
        workgroupBarrier();
    }
    let total = red[0];
    workgroupBarrier();
    return total;
}

fn reduce_max(v: f32, tid: u32) -> f32 {
    var s = v;
    for (var o = SG / 2u; o > 0u; o = o >> 1u) {
        s = max(s, subgroupShuffleXor(s, o));
    }
    if (tid % SG == 0u) {
        red[tid / SG] = s;
    }
    workgroupBarrier();
    for (var h = WG / SG / 2u; h > 0u; h = h >> 1u) {
        if (tid < h) {
            red[tid] = max(red[tid], red[tid + h]);
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
    var s = v;
    for (var o = SG / 2u; o > 0u; o = o >> 1u) {
        s = s + subgroupShuffleXor(s, o);
    }
    if (tid % SG == 0u) {
        red4[tid / SG] = s;
    }
    workgroupBarrier();
    for (var h = WG / SG / 2u; h > 0u; h = h >> 1u) {
        if (tid < h) {
            red4[tid] = red4[tid] + red4[tid + h];
        }
        workgroupBarrier();
    }
    let total = red4[0];
    workgroupBarrier();
    return total;
}
