pub async fn run(_a: super::args::DemoArgs) -> anyhow::Result<std::process::ExitCode> { todo!() }
