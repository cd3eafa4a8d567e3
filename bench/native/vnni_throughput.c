/*
 * Instruction throughput of this CPU's int8 and fp32 multiply-add, one thread: 12 independent chains of
 * VPDPBUSD zmm (AVX512-VNNI, 64 u8·s8 products per instruction) and of VFMADD231PS zmm (16 fp32 FMAs).
 * Tells whether the int8 kernel (src/VitSharp/Native/vitsharp_kernels.c) is at the hardware's limit.
 *
 *   gcc -O2 -o /tmp/vnni_throughput bench/native/vnni_throughput.c && /tmp/vnni_throughput
 */
#include <immintrin.h>
#include <stdio.h>
#include <time.h>
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
#define D(acc,a,b) __asm__ volatile("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(a), "v"(b))
#define F(acc,a,b) __asm__ volatile("vfmadd231ps %2, %1, %0" : "+v"(acc) : "v"(a), "v"(b))
__attribute__((target("avx512f,avx512bw,avx512vnni"))) int main(){
  __m512i a=_mm512_set1_epi32(0x01010101), b=_mm512_set1_epi32(0x01010101);
  __m512i c0=_mm512_setzero_si512(),c1=c0,c2=c0,c3=c0,c4=c0,c5=c0,c6=c0,c7=c0,c8=c0,c9=c0,c10=c0,c11=c0;
  long n=200000000/12;
  for(int rep=0;rep<3;rep++){
  double t0=now();
  for(long i=0;i<n;i++){D(c0,a,b);D(c1,a,b);D(c2,a,b);D(c3,a,b);D(c4,a,b);D(c5,a,b);D(c6,a,b);D(c7,a,b);D(c8,a,b);D(c9,a,b);D(c10,a,b);D(c11,a,b);}
  double t=now()-t0;
  printf("vpdpbusd zmm: %.2f G instr/s = %.0f GOP/s per thread\n", n*12/t*1e-9, n*12*64*2/t*1e-9);
  }
  __m512 fa=_mm512_set1_ps(1e-9f), fb=_mm512_set1_ps(1.0f);
  __m512 f0=_mm512_setzero_ps(),f1=f0,f2=f0,f3=f0,f4=f0,f5=f0,f6=f0,f7=f0,f8=f0,f9=f0,f10=f0,f11=f0;
  double t0=now();
  for(long i=0;i<n;i++){F(f0,fa,fb);F(f1,fa,fb);F(f2,fa,fb);F(f3,fa,fb);F(f4,fa,fb);F(f5,fa,fb);F(f6,fa,fb);F(f7,fa,fb);F(f8,fa,fb);F(f9,fa,fb);F(f10,fa,fb);F(f11,fa,fb);}
  double t=now()-t0;
  printf("vfmadd zmm: %.2f G instr/s = %.0f GFLOP/s per thread\n", n*12/t*1e-9, n*12*32/t*1e-9);
  int s=_mm512_reduce_add_epi32(_mm512_add_epi32(c0,c11)); float fs=_mm512_reduce_add_ps(_mm512_add_ps(f0,f11));
  return (s==12345)+(fs==1.0f);
}
