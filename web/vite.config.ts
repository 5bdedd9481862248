import { defineConfig } from 'vite';

// The page is served from the root of the local cloud's HTTP port and from CloudFront: relative
// asset URLs work in both.
export default defineConfig({
  base: './',
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    target: 'es2022',
    // The wasm is a separate asset either way; keep it out of the chunk-size warning.
    chunkSizeWarningLimit: 1024,
  },
});
