//! Commands that work on local model files directly: `corral tokenize` and `corral bench`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use corral_inference::local::bert::{LocalEmbedder, LocalEmbedderOptions};
use corral_inference::local::gguf::GgufFile;
use corral_inference::local::tokenizer::{Tokenizer, Vocab};
use corral_inference::local::{LoadOptions, LocalChatModel, LocalConfig, LocalProvider};
use corral_stack::ConfigSource;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use crate::model_args::is_local_path;

#[derive(Debug, Args)]
pub struct TokenizeArgs {
    /// A local model: a `.gguf` path, or a model id from the config served by a `local` provider.
    #[arg(short, long)]
    model: String,

    /// Add the beginning-of-text token as the model would.
    #[arg(long)]
    bos: bool,

    /// Print each token's text instead of its id.
    #[arg(long)]
    pieces: bool,

    /// The text; special tokens written in it (`<|eot_id|>`, `<start_of_turn>`) count as specials.
    text: String,
}

/// Where the file behind `--model` is: the path itself, or the config's local model of that id.
pub fn local_model_path(model: &str, config: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if is_local_path(model) {
        return Ok(PathBuf::from(model));
    }
    let source = ConfigSource::discover(config);
    let loaded = source.load()?;
    let entry = loaded
        .models
        .iter()
        .find(|m| m.id == model)
        .with_context(|| {
            format!(
                "{model} is neither a local file nor a model in {}",
                source.origin()
            )
        })?;
    let provider = loaded
        .providers
        .inference
        .iter()
        .find(|p| p.id == entry.provider)
        .with_context(|| {
            format!(
                "model {model}: provider {} is not configured",
                entry.provider
            )
        })?;
    if provider.provider_type != corral_inference::local::PROVIDER_TYPE {
        bail!(
            "model {model} is served by {} ({}), not by a local provider: this command needs a local file",
            provider.id,
            provider.provider_type
        );
    }
    let local = local_provider(provider)?;
    Ok(local.resolve(entry.provider_model.as_deref().unwrap_or(&entry.id)))
}

/// The `local` provider a config entry declares (its typed config checked).
fn local_provider(provider: &corral_stack::ProviderEntry) -> anyhow::Result<LocalProvider> {
    let typed: LocalConfig = provider
        .config
        .clone()
        .try_into()
        .with_context(|| format!("providers.inference {}: config", provider.id))?;
    LocalProvider::new(typed).map_err(anyhow::Error::msg)
}

/// The models directory: the first `local` provider's `models_dir` in the config, else the default.
pub fn configured_models_dir(config: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    models_dir_of(&ConfigSource::discover(config).load()?)
}

/// The models directory a loaded config gives its first `local` provider, else the default.
pub fn models_dir_of(config: &corral_stack::Config) -> anyhow::Result<PathBuf> {
    match config
        .providers
        .inference
        .iter()
        .find(|p| p.provider_type == corral_inference::local::PROVIDER_TYPE)
    {
        Some(provider) => Ok(local_provider(provider)?.models_dir()),
        None => Ok(corral_inference::local::default_models_dir()),
    }
}

fn open_tokenizer(path: &Path) -> anyhow::Result<Tokenizer> {
    let file = GgufFile::open(path)?;
    let vocab = Vocab::from_gguf(file.metadata()).map_err(|e| file.error(e.to_string()))?;
    Ok(Tokenizer::new(vocab).map_err(|e| file.error(e.to_string()))?)
}

pub fn tokenize(args: TokenizeArgs, config: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let path = local_model_path(&args.model, config)?;
    let tokenizer = open_tokenizer(&path)?;
    let ids = tokenizer.encode(&args.text, args.bos, true);
    if args.pieces {
        let pieces = ids
            .iter()
            .map(|id| {
                tokenizer
                    .token_bytes(*id)
                    .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
                    .map_err(|e| anyhow::anyhow!("token {id}: {e}"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        outln!("{}", serde_json::to_string(&pieces)?)?;
    } else {
        outln!("{}", serde_json::to_string(&ids)?)?;
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Prompt-processing and decode speed of a GGUF model, and peak memory (like llama-bench).
    Local(BenchLocalArgs),
    /// Sentences and tokens per second of a local embedder at batch sizes 1 and 32.
    Embed(BenchEmbedArgs),
    /// Write a Llama-3.2-shaped GGUF with random weights (real tokenizer), to benchmark without
    /// downloading a model.
    Synth(BenchSynthArgs),
}

#[derive(Debug, Args)]
pub struct BenchSynthArgs {
    /// The file to write.
    #[arg(long)]
    out: PathBuf,
    /// f32, f16, q8_0, q4_0 or q4_k_m.
    #[arg(long, default_value = "q4_k_m")]
    quant: String,
    /// llama3.2-1b or tiny.
    #[arg(long, default_value = "llama3.2-1b")]
    shape: String,
    /// Meta's Llama 3 `tokenizer.model` (tiktoken format), for the vocabulary.
    #[arg(long)]
    tokenizer: PathBuf,
    /// Seed for the random weights.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

#[derive(Debug, Args)]
pub struct BenchLocalArgs {
    /// The GGUF file (or a config id served by a local provider).
    #[arg(short, long)]
    model: String,
    /// Kernel threads (sets CANDLE_NUM_THREADS for this run; default: the physical cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Tokens in the prompt-processing test (pp).
    #[arg(long, default_value_t = 512)]
    prompt_tokens: usize,
    /// Tokens in the generation test (tg).
    #[arg(long, default_value_t = 128)]
    gen_tokens: usize,
    /// Repetitions of each test.
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Prompt tokens per forward pass.
    #[arg(long, default_value_t = 512)]
    batch: usize,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct BenchEmbedArgs {
    /// The embedder directory (or a config id served by a local provider).
    #[arg(short, long)]
    model: String,
    /// Kernel threads (sets CANDLE_NUM_THREADS for this run).
    #[arg(long)]
    pub threads: Option<usize>,
    /// A file with one sentence per line (default: a built-in mix of 64 sentences).
    #[arg(long)]
    sentences: Option<PathBuf>,
    /// Repetitions.
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

impl BenchCommand {
    pub fn threads(&self) -> Option<usize> {
        match self {
            Self::Local(a) => a.threads,
            Self::Embed(a) => a.threads,
            Self::Synth(_) => None,
        }
    }
}

pub fn bench(command: BenchCommand, config: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    match command {
        BenchCommand::Local(args) => bench_local(args, config),
        BenchCommand::Embed(args) => bench_embed(args, config),
        BenchCommand::Synth(args) => bench_synth(args),
    }
}

fn bench_synth(args: BenchSynthArgs) -> anyhow::Result<ExitCode> {
    use corral_inference::local::synth::{self, LlamaShape, Quant};
    let quant = Quant::parse(&args.quant).with_context(|| {
        format!(
            "--quant {}: expected f32, f16, q8_0, q4_0 or q4_k_m",
            args.quant
        )
    })?;
    let text = std::fs::read_to_string(&args.tokenizer)
        .with_context(|| format!("{}", args.tokenizer.display()))?;
    let vocab = Vocab::llama3_from_tiktoken(&text)
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.tokenizer.display()))?;
    let shape = match args.shape.as_str() {
        "llama3.2-1b" => LlamaShape::llama32_1b(),
        "tiny" => LlamaShape::tiny(vocab.tokens.len()),
        other => bail!("--shape {other}: expected llama3.2-1b or tiny"),
    };
    let progress = spinner(format!("writing {}", args.out.display()));
    let weights = synth::random_weights(&shape, args.seed)?;
    let name = format!("random {} {}", args.shape, args.quant);
    synth::write_gguf(&args.out, &shape, &weights, quant, Some(&vocab), &name)?;
    progress.finish_and_clear();
    outln!("{}", args.out.display())?;
    Ok(ExitCode::SUCCESS)
}

fn spinner(message: String) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} [{elapsed}]")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.set_message(message);
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

fn bar(len: u64, message: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} [{elapsed}]")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(message.to_string());
    bar
}

/// Peak resident memory of this process (Linux: VmHWM), in bytes.
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Mean and sample standard deviation (n - 1, as llama-bench reports it).
fn mean_sd(xs: &[f64]) -> (f64, f64) {
    let n = xs.len().max(1) as f64;
    let mean = xs.iter().sum::<f64>() / n;
    if xs.len() < 2 {
        return (mean, 0.0);
    }
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

fn bench_local(args: BenchLocalArgs, config: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let path = local_model_path(&args.model, config)?;
    if args.prompt_tokens == 0 || args.gen_tokens == 0 || args.reps == 0 {
        bail!("--prompt-tokens, --gen-tokens and --reps must be at least 1");
    }
    let loading = spinner(format!("loading {}", path.display()));
    let started = Instant::now();
    let n_ctx = args.prompt_tokens.max(args.gen_tokens) + 1;
    let loaded = LocalChatModel::load(
        &path,
        LoadOptions {
            n_ctx,
            n_batch: args.batch,
        },
    )?;
    let load_seconds = started.elapsed().as_secs_f64();
    loading.finish_and_clear();
    let model = loaded.model();
    let vocab = model.hparams.vocab_size as u64;
    let mut rng = fastrand_seeded();
    let prompt: Vec<u32> = (0..args.prompt_tokens)
        .map(|_| (rng() % vocab) as u32)
        .collect();
    let threads = candle_core_threads();

    let progress = bar((args.reps * 2) as u64, "benchmarking");
    let mut pp = Vec::new();
    let mut tg = Vec::new();
    // One warm-up pass of each, as llama-bench does, so first-touch costs are not measured.
    for rep in 0..=args.reps {
        let mut cache = model.new_cache(args.prompt_tokens)?;
        let t = Instant::now();
        model.prefill(&prompt, &mut cache, args.batch)?;
        if rep > 0 {
            pp.push(args.prompt_tokens as f64 / t.elapsed().as_secs_f64());
            progress.inc(1);
        }
        let mut cache = model.new_cache(args.gen_tokens)?;
        let mut token = prompt[0];
        let t = Instant::now();
        for _ in 0..args.gen_tokens {
            let logits = model.forward(&[token], &mut cache, false)?;
            token = corral_inference::local::model::argmax(&logits)?;
        }
        if rep > 0 {
            tg.push(args.gen_tokens as f64 / t.elapsed().as_secs_f64());
            progress.inc(1);
        }
    }
    progress.finish_and_clear();
    let (pp_mean, pp_sd) = mean_sd(&pp);
    let (tg_mean, tg_sd) = mean_sd(&tg);
    let rss = peak_rss();
    let file_bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    if args.json {
        outln!(
            "{:#}",
            json!({
                "model": path.display().to_string(),
                "file_bytes": file_bytes,
                "threads": threads,
                "load_seconds": load_seconds,
                "prompt_tokens": args.prompt_tokens,
                "gen_tokens": args.gen_tokens,
                "reps": args.reps,
                "pp_tokens_per_second": pp_mean,
                "pp_sd": pp_sd,
                "tg_tokens_per_second": tg_mean,
                "tg_sd": tg_sd,
                "peak_rss_bytes": rss,
            })
        )?;
    } else {
        outln!(
            "model    {} ({:.1} MiB)",
            path.display(),
            file_bytes as f64 / 1048576.0
        )?;
        outln!("threads  {threads}")?;
        outln!("load     {load_seconds:.2} s")?;
        outln!(
            "pp{:<5}  {pp_mean:8.2} ± {pp_sd:.2} tokens/s",
            args.prompt_tokens
        )?;
        outln!(
            "tg{:<5}  {tg_mean:8.2} ± {tg_sd:.2} tokens/s",
            args.gen_tokens
        )?;
        match rss {
            Some(rss) => outln!("peak RSS {:.1} MiB", rss as f64 / 1048576.0)?,
            None => outln!("peak RSS unknown (no /proc/self/status)")?,
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn fastrand_seeded() -> impl FnMut() -> u64 {
    // A fixed xorshift so every run benchmarks the same prompt.
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    }
}

fn candle_core_threads() -> usize {
    corral_inference::local::kernel_threads()
}

const EMBED_SENTENCES: &[&str] = &[
    "The quick brown fox jumps over the lazy dog.",
    "Retrieval-augmented generation grounds a model's answer in documents it is given.",
    "Paris is the capital and most populous city of France.",
    "Rust guarantees memory safety without a garbage collector.",
    "How do I reset my password if I no longer have access to my email?",
    "The invoice total includes VAT at 20 percent unless the customer is exempt.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "A vector database stores embeddings and finds the nearest ones to a query.",
];

fn bench_embed(args: BenchEmbedArgs, config: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let dir = local_model_path(&args.model, config)?;
    let sentences: Vec<String> = match &args.sentences {
        Some(file) => std::fs::read_to_string(file)
            .with_context(|| format!("{}", file.display()))?
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_string)
            .collect(),
        None => (0..64)
            .map(|i| {
                let s = EMBED_SENTENCES[i % EMBED_SENTENCES.len()];
                // Vary the lengths so batches have padding, as real input does.
                s.repeat(1 + i % 3)
            })
            .collect(),
    };
    if sentences.is_empty() || args.reps == 0 {
        bail!("no sentences to embed");
    }
    let loading = spinner(format!("loading {}", dir.display()));
    let mut results = Vec::new();
    for batch in [1usize, 32] {
        let embedder = LocalEmbedder::load(
            &dir,
            LocalEmbedderOptions {
                batch_size: batch,
                ..LocalEmbedderOptions::default()
            },
        )?;
        loading.finish_and_clear();
        let refs: Vec<&str> = sentences.iter().map(String::as_str).collect();
        let tokens: usize = refs.iter().map(|s| embedder.encode(s).ids.len()).sum();
        embedder.embed_batch(&refs)?; // warm-up
        let mut rates = Vec::new();
        for _ in 0..args.reps {
            let t = Instant::now();
            embedder.embed_batch(&refs)?;
            rates.push(t.elapsed().as_secs_f64());
        }
        let (secs, _) = mean_sd(&rates);
        results.push(json!({
            "batch": batch,
            "sentences_per_second": sentences.len() as f64 / secs,
            "tokens_per_second": tokens as f64 / secs,
        }));
    }
    if args.json {
        outln!(
            "{:#}",
            json!({"model": dir.display().to_string(), "threads": candle_core_threads(), "sentences": sentences.len(), "results": results})
        )?;
    } else {
        outln!("model    {}", dir.display())?;
        outln!("threads  {}", candle_core_threads())?;
        for r in &results {
            outln!(
                "batch {:>2}  {:8.1} sentences/s  {:9.1} tokens/s",
                r["batch"],
                r["sentences_per_second"].as_f64().unwrap_or(0.0),
                r["tokens_per_second"].as_f64().unwrap_or(0.0)
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
