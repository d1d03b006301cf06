{
  "targets": [
    {
      "target_name": "splice",
      "sources": ["src/proxy/native/splice.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "libraries": ["-lpthread"]
    },
    {
      "target_name": "fdpass",
      "sources": ["src/proxy/native/fdpass.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"]
    }
  ]
}
