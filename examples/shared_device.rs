//! A desktop app that already owns a wgpu device hands it to kiln, then runs a small graph
//! on it: y = silu(x W^T) for a random W. Run with `cargo run --release --example shared_device`.

use kiln::{Act, DType, Feed, Gpu, Graph, Plan, Program, Target};

fn main() -> anyhow::Result<()> {
    pollster::block_on(async {
        // The app's own device (it might also render with it).
        let instance =
            wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions::default())
            .await
            .map_err(|e| anyhow::anyhow!("no adapter: {e}; {}", kiln::gpu::INSTALL_HINT))?;
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor::default())
            .await?;

        // kiln works inside it.
        let gpu = Gpu::from_device(device, queue);
        println!("running on {}", gpu.describe());
        let (k, n) = (8, 4);
        let w: Vec<f32> = (0..n * k).map(|i| (i as f32 * 0.37).sin()).collect();
        let w = kiln::load::upload_f32(&gpu, "w", &[n, k], DType::F16, &w).await?;
        let g = Graph::new();
        let x = g.input("x", 1, k);
        g.output("y", g.act(g.matmul(x, g.weight(&w)), Act::Silu));
        let plan = Plan::new(&g, Target::of(&gpu))?;
        println!("{}", plan.memory);
        let program = Program::new(&gpu, plan, None).await?;
        let x: Vec<f32> = (0..k).map(|i| i as f32 / k as f32).collect();
        let out = program.run_at(0, &[("x", Feed::F32(&x))]).await?;
        println!("y = {:?}", out["y"]);
        Ok(())
    })
}
