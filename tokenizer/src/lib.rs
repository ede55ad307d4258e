//! m6-tokenizer

pub mod cli {
    //! `m6corpus tokenizer ...` (placeholder until the tokenizer issue lands).
    #[derive(Debug, clap::Subcommand)]
    pub enum TokenizerCommand {
        /// Train a vocabulary.
        Train,
    }
    impl TokenizerCommand {
        pub fn run(self) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
            Err("tokenizer commands are not built yet".into())
        }
    }
}
