//! Rows of AIConfigurator's silicon sample CSV.

use simctl_engine::catalogue::Backend;

/// Serving mode of a measured deployment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mode {
    /// Aggregated: every worker prefills and decodes.
    Agg,
    /// Disaggregated: prefill workers hand KV to decode workers.
    Disagg,
}

/// Parallelism of one worker (or of the whole deployment for `agg` rows).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Parallelism {
    /// Tensor parallelism.
    pub tp: u32,
    /// Pipeline parallelism.
    pub pp: u32,
    /// Attention data parallelism (0 when not given).
    pub attention_dp: u32,
    /// Tensor parallelism of the experts (0 when not given).
    pub moe_tp: u32,
    /// Expert parallelism (0 when not given).
    pub moe_ep: u32,
}

impl Parallelism {
    /// GPUs one worker spans: tp × attention dp (an attention-DP worker runs `dp` replicas
    /// of its attention, each on `tp` GPUs, over experts spread on all of them), or the
    /// experts' tp × ep where that is larger; times pp.
    pub fn gpus(&self) -> u32 {
        let attention = self.tp.max(1) * self.attention_dp.max(1);
        attention.max(self.moe_tp.max(1) * self.moe_ep.max(1)) * self.pp.max(1)
    }
}

/// A disaggregated row's workers: how many prefill and decode workers, each how parallel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DisaggLayout {
    /// Prefill workers.
    pub prefill_workers: u32,
    /// Parallelism of one prefill worker.
    pub prefill: Parallelism,
    /// Decode workers.
    pub decode_workers: u32,
    /// Parallelism of one decode worker.
    pub decode: Parallelism,
}

/// One measured configuration: a closed-loop client at `concurrency` with fixed lengths.
#[derive(Clone, Debug, PartialEq)]
pub struct SiliconRow {
    /// The row's `id`.
    pub id: String,
    /// Deployment identity used for splits: every column but the concurrency, the
    /// measurements and the source text.
    pub config: String,
    /// Serving engine.
    pub backend: Backend,
    /// Engine version as recorded (may be empty).
    pub backend_version: String,
    /// Hugging Face model path.
    pub model_path: String,
    /// AIConfigurator system name (`h100_sxm`, `gb200`, ...).
    pub system: String,
    /// `precision` column (empty: native BF16).
    pub precision: String,
    /// Serving mode.
    pub mode: Mode,
    /// Prompt tokens per request.
    pub isl: u32,
    /// Output tokens per request.
    pub osl: u32,
    /// Format of the dense GEMMs (`gemm_quant_mode`).
    pub gemm_quant: String,
    /// Format of the MoE experts (`moe_quant_mode`).
    pub moe_quant: String,
    /// Concurrent requests of the closed-loop client.
    pub concurrency: u32,
    /// Parallelism of an `agg` row.
    pub parallel: Parallelism,
    /// Workers of a `disagg` row.
    pub disagg: Option<DisaggLayout>,
    /// Measured mean time to first token, ms.
    pub ttft_ms: f64,
    /// Measured mean time per output token, ms.
    pub tpot_ms: f64,
}

/// A malformed CSV: which line and what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct CsvError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

const COLUMNS: [&str; 34] = [
    "id",
    "silicon_data_source",
    "backend",
    "backend_version",
    "model_path",
    "system",
    "precision",
    "mode",
    "isl",
    "osl",
    "gemm_quant_mode",
    "moe_quant_mode",
    "batch_size",
    "tp_size",
    "pp_size",
    "attention_dp_size",
    "moe_tp_size",
    "moe_ep_size",
    "prefill_batch_size",
    "prefill_num_workers",
    "prefill_tp_size",
    "prefill_pp_size",
    "prefill_attention_dp_size",
    "prefill_moe_tp_size",
    "prefill_moe_ep_size",
    "decode_batch_size",
    "decode_num_workers",
    "decode_tp_size",
    "decode_pp_size",
    "decode_attention_dp_size",
    "decode_moe_tp_size",
    "decode_moe_ep_size",
    "silicon_ttft_ms",
    "silicon_tpot_ms",
];

/// Parses the CSV (AIConfigurator's `silicon_sample.csv` columns, in any order; fields are
/// never quoted in that file, so a quote is an error rather than a silent misparse).
pub fn parse_csv(text: &str) -> Result<Vec<SiliconRow>, CsvError> {
    let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
    let Some((_, header)) = lines.next() else { return Ok(Vec::new()) };
    let names: Vec<&str> = header.trim_start_matches('\u{feff}').split(',').map(str::trim).collect();
    let mut col = [usize::MAX; COLUMNS.len()];
    for (k, want) in COLUMNS.iter().enumerate() {
        col[k] = names.iter().position(|n| n == want).ok_or_else(|| CsvError { line: 1, message: format!("no column `{want}`") })?;
    }
    let mut rows = Vec::new();
    for (i, line) in lines {
        let err = |message: String| CsvError { line: i + 1, message };
        if line.contains('"') {
            return Err(err("quoted fields are not supported".into()));
        }
        let f: Vec<&str> = line.split(',').map(str::trim).collect();
        if f.len() != names.len() {
            return Err(err(format!("{} fields, the header has {}", f.len(), names.len())));
        }
        let get = |name: &str| f[col[COLUMNS.iter().position(|c| *c == name).expect("known column")]];
        let num = |name: &str| -> Result<u32, CsvError> {
            let v = get(name);
            if v.is_empty() {
                return Ok(0);
            }
            v.parse::<f64>().map(|x| x as u32).map_err(|_| err(format!("`{name}` is not a number: `{v}`")))
        };
        let ms = |name: &str| -> Result<f64, CsvError> {
            get(name)
                .parse::<f64>()
                .ok()
                .filter(|x| x.is_finite() && *x > 0.0)
                .ok_or_else(|| err(format!("`{name}` is not a positive number")))
        };
        let backend = Backend::parse(get("backend")).ok_or_else(|| err(format!("unknown backend `{}`", get("backend"))))?;
        let mode = match get("mode") {
            "agg" => Mode::Agg,
            "disagg" => Mode::Disagg,
            m => return Err(err(format!("unknown mode `{m}`"))),
        };
        let par = |prefix: &str| -> Result<Parallelism, CsvError> {
            Ok(Parallelism {
                tp: num(&format!("{prefix}tp_size"))?,
                pp: num(&format!("{prefix}pp_size"))?,
                attention_dp: num(&format!("{prefix}attention_dp_size"))?,
                moe_tp: num(&format!("{prefix}moe_tp_size"))?,
                moe_ep: num(&format!("{prefix}moe_ep_size"))?,
            })
        };
        let source = get("silicon_data_source");
        let field = |key: &str| source.split(';').map(str::trim).find_map(|kv| kv.strip_prefix(key)).map(str::to_string);
        let id = get("id").to_string();
        let disagg = if mode == Mode::Disagg {
            Some(DisaggLayout {
                prefill_workers: num("prefill_num_workers")?.max(1),
                prefill: par("prefill_")?,
                decode_workers: num("decode_num_workers")?.max(1),
                decode: par("decode_")?,
            })
        } else {
            None
        };
        let concurrency = match (mode, field("silicon_concurrency=").and_then(|c| c.parse::<u32>().ok())) {
            (_, Some(c)) => c,
            (Mode::Agg, None) => num("batch_size")?,
            (Mode::Disagg, None) => num("decode_batch_size")? * disagg.map_or(1, |d| d.decode_workers),
        };
        if concurrency == 0 {
            return Err(err("no concurrency (`batch_size`)".into()));
        }
        // Everything but the concurrency: a deployment and its workload, whose concurrency
        // sweep a split keeps together.
        let config = format!(
            "{}|{}|{}|{}|{}|{}|{}|{}|{}x{}|{}",
            backend.as_str(),
            get("backend_version"),
            get("model_path"),
            get("system"),
            get("precision"),
            get("gemm_quant_mode"),
            get("moe_quant_mode"),
            get("mode"),
            get("isl"),
            get("osl"),
            COLUMNS[13..32].iter().filter(|c| !c.ends_with("batch_size")).map(|c| get(c)).collect::<Vec<_>>().join("/")
        );
        rows.push(SiliconRow {
            config,
            backend,
            backend_version: get("backend_version").to_string(),
            model_path: get("model_path").to_string(),
            system: get("system").to_string(),
            precision: get("precision").to_string(),
            mode,
            isl: num("isl")?,
            osl: num("osl")?,
            gemm_quant: get("gemm_quant_mode").to_string(),
            moe_quant: get("moe_quant_mode").to_string(),
            concurrency,
            parallel: par("")?,
            disagg,
            ttft_ms: ms("silicon_ttft_ms")?,
            tpot_ms: ms("silicon_tpot_ms")?,
            id,
        });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "id,silicon_data_source,backend,backend_version,model_path,system,precision,mode,isl,osl,gemm_quant_mode,moe_quant_mode,batch_size,tp_size,pp_size,attention_dp_size,moe_tp_size,moe_ep_size,prefill_batch_size,prefill_num_workers,prefill_tp_size,prefill_pp_size,prefill_attention_dp_size,prefill_moe_tp_size,prefill_moe_ep_size,decode_batch_size,decode_num_workers,decode_tp_size,decode_pp_size,decode_attention_dp_size,decode_moe_tp_size,decode_moe_ep_size,silicon_ttft_ms,silicon_tpot_ms";

    #[test]
    fn parses_agg_and_disagg_rows() {
        let text = format!(
            "{HEADER}\n\
             a_c16,model=x,vllm,,meta-llama/Llama-3.1-70B,h100_sxm,fp8,agg,1024,1024,fp8,fp8,16,4,1,1,4,1,,,,,,,,,,,,,,,121.4,13.19\n\
             b,config_id=697; silicon_concurrency=256,vllm,0.18.0,moonshotai/Kimi-K2.5,gb200,fp4,disagg,1024,1024,nvfp4,nvfp4,,,,,,,1,1,4,1,1,1,4,256,1,16,1,1,1,16,564.3,19.0\n"
        );
        let rows = parse_csv(&text).unwrap();
        assert_eq!(rows.len(), 2);
        let (a, b) = (&rows[0], &rows[1]);
        assert_eq!((a.backend, a.mode, a.isl, a.osl, a.concurrency), (Backend::Vllm, Mode::Agg, 1024, 1024, 16));
        assert_eq!(a.parallel.gpus(), 4);
        assert_eq!((a.ttft_ms, a.tpot_ms), (121.4, 13.19));
        assert_eq!(b.concurrency, 256, "from silicon_concurrency");
        let d = b.disagg.unwrap();
        assert_eq!((d.prefill_workers, d.prefill.gpus(), d.decode_workers, d.decode.gpus()), (1, 4, 1, 16));
        // The split key leaves out the concurrency: rows of one sweep share it.
        let c64 = parse_csv(&text.replace("_c16,", "_c64,").replace(",16,4,1,1,4,1,", ",64,4,1,1,4,1,")).unwrap();
        assert_eq!(c64[0].config, a.config);
        assert_eq!(c64[0].concurrency, 64);
    }

    #[test]
    fn bad_input_names_the_line_and_the_problem() {
        let e = parse_csv("id,backend\nx,vllm\n").unwrap_err();
        assert!(e.to_string().contains("no column `silicon_data_source`"), "{e}");
        let row = "x,s,vllm,,m,h100_sxm,,agg,1,1,,,4,1,1,1,1,1,,,,,,,,,,,,,,,abc,1";
        let e = parse_csv(&format!("{HEADER}\n{row}\n")).unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.message.contains("silicon_ttft_ms"), "{e}");
        let e = parse_csv(&format!("{HEADER}\n{}\n", row.replace("vllm", "tgi"))).unwrap_err();
        assert!(e.message.contains("unknown backend `tgi`"), "{e}");
    }
}
