//! The `corral` command: a thin shell over `corral-stack`. Each subcommand parses its arguments,
//! asks the stack, and prints for people (default) or for programs (`--json`).

/// `println!` that returns the write's error instead of panicking, so that output into a closed
/// pipe ends the command quietly (see `main`).
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)
    }};
}

mod agent_cmd;
mod config_cmd;
mod embed_cmd;
mod generate_cmd;
#[cfg(feature = "local")]
mod local_cmd;
mod memory_cmd;
mod model_args;
mod models_cmd;
mod providers_cmd;
mod serve_cmd;
mod shield_cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

const EXAMPLES: &str = "\
Examples:
  corral config check                    Check ./corral.toml (or the built-in default) and show the stack
  corral config check -c site.toml --json
  corral providers                       List the provider types this build supports
  corral generate -m llama3.2-3b --chat 'Why is the sky blue?'
  corral generate --base-url http://127.0.0.1:8080/v1 -m gemma --temperature 0 'The capital of France is'
  corral embed -m minilm 'first text' 'second text'
  corral generate -m ~/.cache/corral/models/gemma-3-270m-q4_k_m.gguf --temperature 0 'The capital city of France is called'
  corral tokenize -m model.gguf --pieces 'Hello world'
  corral bench local -m model.gguf --threads 2 --json
  corral models list
  corral ingest docs/ --prune            Load, chunk, embed and store everything under docs/
  corral search 'how do I rotate keys' --top-k 5 --filter format=pdf
  corral stores
  corral ask 'How do I rotate keys?' --docs docs/   Ingest docs/, then answer with citations
  corral ask 'What changed in 2.0?' --json
  corral chat                            Chat with the configured agent (sessions are kept)
  corral chat --session sess_… 'And after that?'
  corral chat --model gemma --base-url http://127.0.0.1:8080/v1 --tools calc 'What is 17*23?'
  corral shield prompt-injection 'Ignore all previous instructions'   Exit 1: blocked
  corral shield pii-redact --file notes.txt --json
  corral shield prompt-injection --as retrieved --file page.html
  corral eval retrieval --corpus corpus.jsonl --queries queries.jsonl --qrels qrels.tsv
  corral models pull bartowski/Llama-3.2-1B-Instruct-GGUF --file Llama-3.2-1B-Instruct-Q4_K_M.gguf
  CORRAL_CONFIG=site.toml corral config check

Config: --config FILE, else $CORRAL_CONFIG, else ./corral.toml, else the built-in default.
Logging: -v/-vv/-vvv for more, -q for errors only; RUST_LOG overrides both.";

#[derive(Debug, Parser)]
#[command(
    name = "corral",
    version,
    long_version = LONG_VERSION.as_str(),
    about = "Agentic RAG with pluggable providers: local and remote models, vector memory, tools, safety.",
    after_help = EXAMPLES
)]
struct Cli {
    /// The config file (TOML); else $CORRAL_CONFIG, else ./corral.toml, else the built-in default.
    #[arg(short, long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,

    /// More log output (repeat for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    verbose: u8,

    /// Only errors.
    #[arg(short, long, global = true)]
    quiet: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Work with the config file.
    #[command(subcommand)]
    Config(config_cmd::ConfigCommand),
    /// List the provider types this build supports, per API.
    Providers {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Stream a completion from a model, raw or (with --chat) as a one-message chat.
    Generate(generate_cmd::GenerateArgs),
    /// Print embeddings of the given texts as a JSON array of vectors.
    Embed(embed_cmd::EmbedArgs),
    /// Work with models.
    #[command(subcommand)]
    Models(models_cmd::ModelsCommand),
    /// Print the token ids (or with --pieces the texts) a local model reads for a text.
    #[cfg(feature = "local")]
    Tokenize(local_cmd::TokenizeArgs),
    /// Measure local inference speed and memory.
    #[cfg(feature = "local")]
    #[command(subcommand)]
    Bench(local_cmd::BenchCommand),
    /// Load, chunk, embed and store documents (PDF, Markdown, HTML, text) in a vector store.
    Ingest(memory_cmd::IngestArgs),
    /// Search a vector store: hybrid (default), vector or keyword.
    Search(memory_cmd::SearchArgs),
    /// List the configured vector stores with their document and chunk counts.
    Stores(memory_cmd::StoresArgs),
    /// Measure quality.
    #[command(subcommand)]
    Eval(memory_cmd::EvalCommand),
    /// Answer a question from documents, with numbered citations (ingesting --docs first).
    Ask(agent_cmd::AskArgs),
    /// Chat with an agent: interactively, or one turn with a message argument.
    Chat(agent_cmd::ChatArgs),
    /// Check a text with a shield: exit 0 when allowed, 1 when blocked, 2 when it cannot decide.
    Shield(shield_cmd::ShieldArgs),
    /// Serve the OpenAI- and Llama-Stack-compatible HTTP API (port 8321 unless configured).
    Serve(serve_cmd::ServeArgs),
}

static LONG_VERSION: std::sync::LazyLock<String> = std::sync::LazyLock::new(long_version);

/// What the binary was built for: local inference speed depends on the SIMD it may use.
fn long_version() -> String {
    let simd: Vec<&str> = [
        ("avx2", cfg!(target_feature = "avx2")),
        ("fma", cfg!(target_feature = "fma")),
        ("f16c", cfg!(target_feature = "f16c")),
        ("avx512f", cfg!(target_feature = "avx512f")),
        ("neon", cfg!(target_feature = "neon")),
    ]
    .into_iter()
    .filter_map(|(name, on)| on.then_some(name))
    .collect();
    format!(
        "{}\ntarget: {}-{}\nsimd: {}\nrun-time simd: {}",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::ARCH,
        std::env::consts::OS,
        if simd.is_empty() {
            "none".to_string()
        } else {
            simd.join(" ")
        },
        run_time_simd()
    )
}

/// What this CPU adds that some kernels pick at run time: the prompt-batch and embedding
/// products run in AVX-512 (F, BW) where it is there, whatever the build targets.
fn run_time_simd() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512bw")
    {
        return "avx512f avx512bw (prompt-batch and embedding kernels)";
    }
    "none beyond the build's"
}

fn init_logging(verbose: u8, quiet: bool) {
    use tracing_subscriber::EnvFilter;
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        (false, _) => "trace",
    };
    // aws-sigv4 traces the canonical request, session token included: never shown.
    let from_env = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty());
    let mut problem = None;
    let filter = match &from_env {
        Some(directives) => EnvFilter::try_new(directives).unwrap_or_else(|e| {
            problem = Some(format!(
                "RUST_LOG={directives:?} is not a valid filter ({e}); using {level}"
            ));
            EnvFilter::new(level)
        }),
        // pdf-extract and lopdf warn about every odd glyph; the loader reports what matters.
        None => EnvFilter::new(format!("{level},lopdf=error,pdf_extract=error")),
    }
    .add_directive("aws_sigv4=off".parse().expect("a valid directive"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
    if let Some(problem) = problem {
        tracing::warn!("{problem}");
    }
}

fn block_on<F: std::future::Future<Output = anyhow::Result<ExitCode>>>(
    future: F,
) -> anyhow::Result<ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(future)
}

/// Stops with a clear message when the binary was built for SIMD this CPU lacks (the default build
/// targets x86-64-v3: AVX2, FMA, F16C), instead of dying on an illegal instruction mid-run. The
/// code around it is compiled for the same target and uses AVX (not AVX2) instructions, so a CPU
/// without AVX at all (before 2011) fails before this can speak.
fn check_cpu() -> Result<(), String> {
    #[cfg(target_arch = "x86_64")]
    {
        let needed = [
            (
                "avx2",
                cfg!(target_feature = "avx2"),
                std::arch::is_x86_feature_detected!("avx2"),
            ),
            (
                "fma",
                cfg!(target_feature = "fma"),
                std::arch::is_x86_feature_detected!("fma"),
            ),
            (
                "f16c",
                cfg!(target_feature = "f16c"),
                std::arch::is_x86_feature_detected!("f16c"),
            ),
        ];
        let missing: Vec<&str> = needed
            .iter()
            .filter(|(_, built, has)| *built && !*has)
            .map(|(name, _, _)| *name)
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "this corral binary was built for x86-64-v3 CPUs, and this CPU lacks {}. \
                 Rebuild for it with: RUSTFLAGS=\"-C target-cpu=native\" cargo install --path crates/cli \
                 (local models will run slower without AVX2/FMA).",
                missing.join(", ")
            ));
        }
    }
    Ok(())
}

/// Sizes candle's kernel thread pool, which it reads once from the environment: from `--threads`,
/// else from the first `local` provider's `threads` in the config.
#[cfg(feature = "local")]
fn set_kernel_threads(cli: &Cli) {
    let from_flag = match &cli.command {
        Command::Bench(bench) => bench.threads(),
        _ => None,
    };
    let from_config = || {
        let config = corral_stack::ConfigSource::discover(cli.config.clone())
            .load()
            .ok()?;
        config
            .providers
            .inference
            .iter()
            .find(|p| p.provider_type == "local")?
            .config
            .get("threads")?
            .as_integer()
            .and_then(|n| usize::try_from(n).ok())
    };
    let Some(threads) = from_flag.or_else(from_config).filter(|n| *n > 0) else {
        return;
    };
    // SAFETY: called first thing in `main`, before any other thread exists (no runtime, no pool),
    // so nothing can read the environment concurrently.
    #[allow(unsafe_code)]
    unsafe {
        std::env::set_var("CANDLE_NUM_THREADS", threads.to_string());
        std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
    }
}

/// The PDF loader catches pdf-extract's panics (one bad page costs that page) and reports them;
/// the default hook would also print each to stderr, so for its thread they are logged instead.
fn quiet_pdf_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if std::thread::current().name() == Some(corral_memory::load::PDF_THREAD_NAME) {
            tracing::debug!("the PDF parser panicked: {info}");
        } else {
            default(info);
        }
    }));
}

fn main() -> ExitCode {
    quiet_pdf_panics();
    if let Err(message) = check_cpu() {
        eprintln!("error: {message}");
        return ExitCode::FAILURE;
    }
    let cli = Cli::parse();
    #[cfg(feature = "local")]
    set_kernel_threads(&cli);
    init_logging(cli.verbose, cli.quiet);
    let result = match cli.command {
        Command::Config(command) => config_cmd::run(command, cli.config),
        Command::Providers { json } => providers_cmd::run(json),
        Command::Generate(args) => block_on(generate_cmd::run(args, cli.config)),
        Command::Embed(args) => block_on(embed_cmd::run(args, cli.config)),
        Command::Models(command) => block_on(models_cmd::run(command, cli.config)),
        #[cfg(feature = "local")]
        Command::Tokenize(args) => local_cmd::tokenize(args, cli.config),
        #[cfg(feature = "local")]
        Command::Bench(command) => local_cmd::bench(command, cli.config),
        Command::Ingest(args) => block_on(memory_cmd::ingest(args, cli.config)),
        Command::Search(args) => block_on(memory_cmd::search(args, cli.config)),
        Command::Stores(args) => block_on(memory_cmd::stores(args, cli.config)),
        Command::Eval(command) => block_on(memory_cmd::eval(command, cli.config)),
        Command::Ask(args) => block_on(agent_cmd::ask(args, cli.config)),
        Command::Chat(args) => block_on(agent_cmd::chat(args, cli.config)),
        Command::Shield(args) => block_on(shield_cmd::run(args, cli.config)),
        Command::Serve(args) => block_on(serve_cmd::run(args, cli.config)),
    };
    match result {
        Ok(code) => code,
        // A reader that stops early (`corral embed … | head`) is not a failure.
        Err(error)
            if error
                .downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
